"""The forward pass of a causal LM as mmbench's LM adapters use it: final hidden states, logits at chosen
positions only, prefix-tuned models, device and precision.

Every LM-based helper (training loss, decoding, class-name scoring) goes through ``lm_hidden``, so the same
rules hold everywhere:
  * position ids are ``cumsum(attention_mask) - 1`` over the whole sequence seen so far (prefix and cache
    included), so left- and right-padded batches give every real token the same position;
  * a peft prefix-tuned model (``trainable=prefix:n=...``) gets its n virtual key/value pairs as the initial
    cache, and n ones in front of the attention mask (as peft's own forward does);
  * inputs go to the LM's device; the pass runs under ``torch.autocast`` when the adapter chose a lower
    precision (``set_compute_dtype``; trained parameters stay fp32).
``logits_at`` applies the output head only at the positions asked for, so a (B, T, vocab) tensor is never
materialised where the LM's logits are a plain linear map of the final hidden state (LLaMA family, OPT,
GPT-2, Mistral, Qwen, GPT-NeoX); other models fall back to their full forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmbench.devices import autocast

# model_type values whose logits are exactly ``lm_head(final hidden state)`` (no soft-capping or scaling)
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "opt", "gpt2", "gpt_neox", "gptj", "phi3",
                              "smollm3", "olmo", "olmo2"})


def unwrap(model: nn.Module) -> nn.Module:
    """The ``*ForCausalLM`` model inside a peft wrapper (LoRA layers stay injected), or the model itself."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) and type(model).__name__.startswith("Peft") else model


def prefix_length(model: nn.Module) -> int:
    """Number of virtual tokens of a peft prefix-tuned model (0 otherwise)."""
    cfg = getattr(model, "active_peft_config", None)
    if cfg is None or str(getattr(cfg, "peft_type", "")).split(".")[-1] != "PREFIX_TUNING":
        return 0
    return int(cfg.num_virtual_tokens)


def set_compute_dtype(model: nn.Module, dtype: torch.dtype) -> None:
    """Remember the precision the adapter chose for this LM's forward passes."""
    model.mmbench_compute_dtype = dtype


def compute_dtype(model: nn.Module) -> torch.dtype:
    return getattr(model, "mmbench_compute_dtype", torch.float32)


def model_device(model: nn.Module) -> torch.device:
    return unwrap(model).get_input_embeddings().weight.device


def plain_head(model: nn.Module) -> nn.Module | None:
    """The output head when logits = head(final hidden state) exactly, else None."""
    lm = unwrap(model)
    if getattr(lm.config, "model_type", "") not in PLAIN_HEAD_TYPES:
        return None
    head = lm.get_output_embeddings()
    return head if isinstance(head, nn.Linear) else None


def lm_hidden(model: nn.Module, *, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
              attention_mask: torch.Tensor, past_key_values: Any = None,
              use_cache: bool = False) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """Final hidden states of the LM's backbone.

    input_ids (B, T) long or inputs_embeds (B, T, H); attention_mask (B, T) for these positions only, or
    (B, P + T) including the P positions already in ``past_key_values``.
    -> hidden (B, T, H), the cache (when ``use_cache``), the full attention mask (B, prefix + P + T).
    """
    lm = unwrap(model)
    dev = model_device(model)
    x = input_ids if input_ids is not None else inputs_embeds
    if x is None:
        raise ValueError("lm_hidden needs input_ids or inputs_embeds")
    bsz, length = x.shape[0], x.shape[1]
    mask = attention_mask.to(dev)
    if past_key_values is None:
        n = prefix_length(model)
        if n:
            past_key_values = model.get_prompt(bsz)
            mask = torch.cat([torch.ones(bsz, n, dtype=mask.dtype, device=dev), mask], 1)
    if mask.shape[1] < length:
        raise ValueError(f"attention_mask covers {mask.shape[1]} positions but the inputs have {length}")
    position_ids = (mask.long().cumsum(-1) - 1).clamp_min(0)[:, -length:]
    kwargs = {"input_ids": input_ids.to(dev)} if input_ids is not None else {"inputs_embeds": inputs_embeds.to(dev)}
    with autocast(dev, compute_dtype(model)):
        out = lm.base_model(**kwargs, attention_mask=mask, position_ids=position_ids,
                            past_key_values=past_key_values, use_cache=use_cache)
    return out.last_hidden_state, (out.past_key_values if use_cache else None), mask


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """hidden (..., H) -> logits (..., V) in fp32 through the LM's output head."""
    head = unwrap(model).get_output_embeddings()
    with autocast(hidden.device, compute_dtype(model)):
        return head(hidden).float()


def logits_at(model: nn.Module, batch: dict[str, torch.Tensor], rows: torch.Tensor,
              cols: torch.Tensor) -> torch.Tensor:
    """Logits (n, V) fp32 at positions (rows[i], cols[i]) of a batch (``input_ids``/``inputs_embeds`` and
    ``attention_mask``, e.g. from ``lm_utils.collate``): the prediction of the token after each position."""
    inputs = {k: batch[k] for k in ("input_ids", "inputs_embeds") if k in batch}
    dev = model_device(model)
    rows, cols = rows.to(dev), cols.to(dev)
    if plain_head(model) is not None:
        hidden, _, _ = lm_hidden(model, **inputs, attention_mask=batch["attention_mask"])
        return head_logits(model, hidden[rows, cols])
    return full_logits(model, batch)[rows, cols]


def logits_at_sets(model: nn.Module, batch: dict[str, torch.Tensor],
                   positions: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Like ``logits_at`` for several (rows, cols) sets from ONE forward pass: -> [(n_i, V) fp32, ...]."""
    dev = model_device(model)
    positions = [(r.to(dev), c.to(dev)) for r, c in positions]
    if plain_head(model) is not None:
        inputs = {k: batch[k] for k in ("input_ids", "inputs_embeds") if k in batch}
        hidden, _, _ = lm_hidden(model, **inputs, attention_mask=batch["attention_mask"])
        return [head_logits(model, hidden[r, c]) for r, c in positions]
    full = full_logits(model, batch)
    return [full[r, c] for r, c in positions]


def hidden_at(model: nn.Module, batch: dict[str, torch.Tensor], rows: torch.Tensor,
              cols: torch.Tensor) -> torch.Tensor:
    """Final hidden states (n, H) at positions (rows[i], cols[i])."""
    inputs = {k: batch[k] for k in ("input_ids", "inputs_embeds") if k in batch}
    hidden, _, _ = lm_hidden(model, **inputs, attention_mask=batch["attention_mask"])
    dev = hidden.device
    return hidden[rows.to(dev), cols.to(dev)]


def full_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T, V) fp32 logits through the model's own forward (for heads that are not a plain linear map)."""
    lm = unwrap(model)
    dev = model_device(model)
    inputs = {k: batch[k].to(dev) for k in ("input_ids", "inputs_embeds") if k in batch}
    mask = batch["attention_mask"].to(dev)
    n = prefix_length(model)
    past = None
    if n:
        bsz = mask.shape[0]
        past = model.get_prompt(bsz)
        mask = torch.cat([torch.ones(bsz, n, dtype=mask.dtype, device=dev), mask], 1)
    length = next(iter(inputs.values())).shape[1]
    position_ids = (mask.long().cumsum(-1) - 1).clamp_min(0)[:, -length:]
    with autocast(dev, compute_dtype(model)):
        out = lm(**inputs, attention_mask=mask, position_ids=position_ids, past_key_values=past, use_cache=False)
    return out.logits.float()
