"""Where a job computes: device and precision, resolved once per job and passed to the adapter.

``--device`` (``mmbench eval`` / ``mmbench sweep``):
  ``auto``    the GPU Ray assigned to the job (Ray sets ``CUDA_VISIBLE_DEVICES``, so it is ``cuda:0`` inside the
              worker), else ``cuda`` when a CUDA device is visible, else ``cpu``
  ``cpu``     the CPU
  ``cuda``    the current CUDA device (``cuda:0`` unless ``CUDA_VISIBLE_DEVICES`` says otherwise)
  ``cuda:N``  CUDA device N
The adapter finds the result in ``self.device``; it puts its modules and batches there. Scores come back to the
CPU only where the harness's evaluator needs them (ranking, metrics).

``dtype`` (a config key of LM-based adapters, ``--set dtype=...``): ``fp32``, ``bf16``, ``fp16`` or ``auto``
(fp32 on the CPU, bf16 on a GPU that supports it, else fp32). Frozen backbone weights are cast to it; trained
parameters stay fp32 and the forward pass runs under ``torch.autocast`` (see ``autocast``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import torch

from mmbench.errors import ConfigError

DEVICE_HELP = "auto, cpu, cuda or cuda:N"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_HELP = "auto, fp32, bf16 or fp16"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(spec: str, where: str = "--device") -> str:
    """The spec, lower-cased, if it is well-formed; else a ConfigError naming ``where``."""
    s = str(spec).strip().lower()
    if not _DEVICE_RE.match(s):
        raise ConfigError(f"{where} {spec!r}: expected {DEVICE_HELP}")
    return s


def ray_gpu_ids() -> list[Any]:
    """GPU ids Ray assigned to this worker ([] outside a Ray worker or without GPUs)."""
    try:
        import ray

        if ray.is_initialized():
            return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001  (no Ray, or not inside a worker: no assignment)
        pass
    return []


def resolve_device(spec: str = "auto", where: str = "--device") -> torch.device:
    """``--device`` value -> torch.device; refuses a CUDA device this process cannot see."""
    s = check_device_spec(spec, where)
    if s == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if s == "auto":  # inside a Ray worker CUDA_VISIBLE_DEVICES holds only the assigned GPUs: cuda:0 is ours
        return torch.device("cuda", 0) if available else torch.device("cpu")
    if not available:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        build = torch.version.cuda or "CPU-only"
        raise ConfigError(f"{where} {spec}: no CUDA device is visible to this process (torch {torch.__version__}, "
                          f"{build} build{f', CUDA_VISIBLE_DEVICES={visible!r}' if visible is not None else ''}); "
                          f"use --device cpu or --device auto")
    index = int(s.split(":", 1)[1]) if ":" in s else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"{where} {spec}: this process sees {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def resolve_dtype(spec: str, device: torch.device, where: str = "dtype") -> torch.dtype:
    """``dtype`` config value -> torch dtype for ``device``."""
    s = str(spec).strip().lower()
    if s == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if s not in DTYPES:
        raise ConfigError(f"{where}={spec!r}: expected {DTYPE_HELP}")
    return DTYPES[s]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}.get(dtype, str(dtype).replace("torch.", ""))


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Mixed precision for a forward pass: a no-op in fp32, ``torch.autocast`` otherwise."""
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU model, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from mmbench.provenance import cpu_model

    return cpu_model()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by torch since the last reset, in MiB (None on the CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def describe_device(device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    """The record's account of where the number was computed."""
    out: dict[str, Any] = {"device": str(device), "name": device_name(device),
                           "dtype": dtype_name(dtype) if dtype is not None else "fp32"}
    gpus = ray_gpu_ids()
    if gpus:
        out["ray_gpu_ids"] = [str(g) for g in gpus]
    peak = peak_memory_mb(device)
    if peak is not None:
        out["peak_gpu_memory_mb"] = peak
    return out


def to_device(obj: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts, lists and tuples) moved to ``device``; other values as they are."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
