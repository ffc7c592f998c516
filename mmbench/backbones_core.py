"""Backbone identities (name, folder, config hash, weights fingerprint), where pretrained folders are found, and
the on-disk cache of backbone outputs keyed by identity (``mmbench.backbones`` is the entry point)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mmbench import paths
from mmbench.errors import ConfigError
from mmbench.io import canonical_json, sha256_hex

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf", ".ckpt", ".h5", ".msgpack")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BackboneIdentity:
    """What a backbone is, independent of where it runs (JSON-able via ``as_dict``)."""

    kind: str           # "text-encoder" | "vision-encoder" | "causal-lm"
    name: str           # as the user gave it
    path: str | None    # resolved folder (None for models built from a config, e.g. tiny-llama)
    config_sha: str     # sha256 of the canonical JSON config
    weights: str        # fingerprint of the weight files ("random-init:seed0" for tiny models)

    @property
    def key(self) -> str:
        """Cache key part: equal only for the same config and weights (the folder may move)."""
        return sha256_hex(self.kind, self.config_sha, self.weights)[:24]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def not_cached_message(name: str, kind: str) -> str:
    cache = hub_cache_dir()
    return (f"{kind} {name!r} is neither a local folder nor in the Hugging Face cache ({cache}); mmbench "
            f"downloads nothing at run time. On a machine with internet run `hf download {name}` (or "
            f"`huggingface-cli download {name}`) and copy {cache}/models--{name.replace('/', '--')} to this "
            f"machine's cache (or point HF_HUB_CACHE / HF_HOME at a copy), or pass the model's folder (what "
            f"`save_pretrained` writes) instead of its name")


def pretrained_dir(name: str, kind: str) -> Path:
    """A local Hugging Face model folder for ``name`` (a folder path or a cached hub name)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{kind} {name!r}: the folder has no config.json; give a Hugging Face model folder "
                              f"(what `save_pretrained` writes)")
        return p.resolve()
    if name.startswith(("/", "./", "../", "~")) or p.exists():
        raise ConfigError(f"{kind} {name!r}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001  (any lookup failure means: not available offline)
        raise ConfigError(not_cached_message(name, kind)) from None


_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def weights_fingerprint(folder: Path) -> str:
    """Size and the first and last MiB of every weight file (fast, and it changes when the weights do)."""
    files = sorted(f for f in Path(folder).rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    stat = tuple((str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    memo_key = (str(folder), stat)
    if memo_key not in _FINGERPRINTS:
        parts: list[str | bytes] = []
        for f, (rel, size, _) in zip(files, stat, strict=True):
            with open(f, "rb") as fh:
                head = fh.read(1 << 20)
                if size > 2 << 20:
                    fh.seek(size - (1 << 20))
                tail = fh.read(1 << 20)
            parts += [rel, str(size), head, tail]
        _FINGERPRINTS[memo_key] = sha256_hex(*parts)[:16] if parts else "no-weight-files"
    return _FINGERPRINTS[memo_key]


def folder_identity(kind: str, name: str, folder: Path) -> BackboneIdentity:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)
    config.pop("transformers_version", None)
    return BackboneIdentity(kind, name, str(folder), sha256_hex(canonical_json(config))[:16],
                            weights_fingerprint(folder))


def config_identity(kind: str, name: str, config: Any, weights: str) -> BackboneIdentity:
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    d.pop("_name_or_path", None)
    d.pop("transformers_version", None)
    return BackboneIdentity(kind, name, None, sha256_hex(canonical_json(d))[:16], weights)


def cached(kind: str, key_parts: list[Any], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per distinct key; the result is kept under ``$MMBENCH_CACHE/<kind>/<hash>.pt``.

    Tensors are stored on the CPU (so a cache written on a GPU is read anywhere) and loaded onto the CPU.
    """
    from mmbench.devices import to_device

    key = sha256_hex(*(p if isinstance(p, (bytes, str)) else repr(p) for p in key_parts))[:24]
    path = paths.cache_root() / kind / f"{key}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        # a corrupt cache entry is recomputed
        except Exception:  # noqa: BLE001
            pass
    value = to_device(compute(), torch.device("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value
