"""Prompts, batches, the target-only loss and training steps shared by mmbench's causal-LM adapters
(``lm-node``, ``lm-subgraph``, ``mmgl``, ``lm-cls``, Graph4MM, VW-LMM). Decoding and class-name scoring live in
``mmbench.models.lm_decode``, the forward pass in ``mmbench.models.lm_forward``, what trains in
``mmbench.models.lm_policies``.

Prompt format. Plain text, no chat template: ``"{context}\\nSummary:"`` followed by the target as
``" {target}"`` and EOS. Every adapter fine-tunes the LM (or at least input adapters) on this format, so the
instruct model's chat template is not needed, and the same format works for base LMs and the random
``tiny-llama`` of the tests. Prompts and targets are tokenized separately and their ids concatenated, so the
boundary is exactly where the labels start.

Batches (one sample = a list of *parts*):
  * a token-id part: ``list[int]`` or a 1-D long tensor;
  * a soft-token part: a float tensor (n, hidden) placed as is into ``inputs_embeds`` (prepended or spliced
    anywhere between token parts, e.g. MMGL's neighbour tokens or image tokens).
``collate`` pads (right for training, left for generation), puts the batch on a device and returns
``input_ids`` when every part is token ids and no embedding layer is given, else ``inputs_embeds``, plus
``soft_mask`` (B, T) bool: True at positions that came from soft-token parts (VW-LMM puts a loss there). With
targets it appends target + EOS and sets ``labels`` to -100 everywhere except on the target tokens (and the
EOS). The loss is computed on those positions only, never on prompt, soft tokens or padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.models.lm_forward import logits_at
from mmbench.models.lm_policies import (  # noqa: F401  (re-exported: adapters import them from here)
    TRAINABLE_HELP,
    apply_trainable,
    decoder_layers,
    final_norm,
    parse_trainable,
    prepare_lm,
)

PROMPT_SUFFIX = "\nSummary:"
IGNORE_INDEX = -100

Part = Sequence[int] | torch.Tensor


# --------------------------------------------------------------------------- tokens and prompts
def special_prefix(tokenizer: Any) -> list[int]:
    """Ids the tokenizer itself puts before a text (e.g. LLaMA-2's BOS; none for SmolLM2)."""
    cache = getattr(tokenizer, "_mmbench_special_prefix", None)
    if cache is None:
        with_special = tokenizer("a").input_ids
        plain = tokenizer("a", add_special_tokens=False).input_ids
        cache = list(with_special[: len(with_special) - len(plain)]) if with_special[-len(plain):] == plain else []
        with contextlib.suppress(AttributeError):  # a tokenizer that refuses attributes: recompute each time
            tokenizer._mmbench_special_prefix = cache
    return list(cache)


def token_ids(tokenizer: Any, text: str | None, max_tokens: int | None = None) -> list[int]:
    """Token ids of ``text`` without special tokens, the first ``max_tokens`` kept (None: all)."""
    if not text:
        return []
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    return ids if max_tokens is None else ids[: max(0, max_tokens)]


def prompt_ids(tokenizer: Any, context: str | None, max_tokens: int | None = None,
               suffix: str = PROMPT_SUFFIX) -> list[int]:
    """``[special prefix] + context + "\\nSummary:"`` as ids, the context cut (from its end) so that the whole
    prompt has at most ``max_tokens`` tokens."""
    head = special_prefix(tokenizer)
    tail = token_ids(tokenizer, suffix)
    budget = None if max_tokens is None else max(0, max_tokens - len(head) - len(tail))
    return head + token_ids(tokenizer, context, budget) + tail


def context_prompt_ids(tokenizer: Any, first: str | None, others: Sequence[str], max_tokens: int,
                       priority: Sequence[int] | None = None, header: str = "\nContext:",
                       suffix: str = PROMPT_SUFFIX, min_piece_tokens: int = 8) -> tuple[list[int], list[int]]:
    """A prompt ``first [header others...] suffix`` within ``max_tokens`` tokens.

    ``first`` (the target node's text) comes first and is cut only if it alone overflows. ``others`` (each
    already carrying its own separator, e.g. ``"\\n[page] ..."``) are admitted in ``priority`` order (a
    permutation of their indices, nearest first; default: as given) while they fit; the first one that
    does not fit is cut to the remaining budget (if at least ``min_piece_tokens`` remain) and every one after
    it is dropped, so the farthest pieces go first. Admitted pieces appear in their original order.
    Returns (ids, indices of the admitted pieces).
    """
    head = special_prefix(tokenizer)
    tail = token_ids(tokenizer, suffix)
    budget = max(0, max_tokens - len(head) - len(tail))
    first_ids = token_ids(tokenizer, first, budget)
    budget -= len(first_ids)
    hdr = token_ids(tokenizer, header)
    kept: dict[int, list[int]] = {}
    if others and budget > len(hdr):
        budget -= len(hdr)
        for i in (priority if priority is not None else range(len(others))):
            ids = token_ids(tokenizer, others[i])
            if not ids:
                continue
            if len(ids) <= budget:
                kept[i] = ids
                budget -= len(ids)
                continue
            if budget >= min_piece_tokens:
                kept[i] = ids[:budget]
            break
    order = sorted(kept)
    body = first_ids + (hdr + [t for i in order for t in kept[i]] if order else [])
    return head + body + tail, order


def target_ids(tokenizer: Any, target: str, max_tokens: int | None = None) -> list[int]:
    """``" " + target`` (first ``max_tokens`` tokens) followed by EOS: what the model learns to emit after
    the prompt's ``"Summary:"``."""
    return token_ids(tokenizer, " " + target.strip(), max_tokens) + [int(tokenizer.eos_token_id)]


def pad_id(tokenizer: Any) -> int:
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


# --------------------------------------------------------------------------- batches
def _as_ids(part: Part) -> torch.Tensor | None:
    if isinstance(part, torch.Tensor):
        if part.dtype in (torch.long, torch.int, torch.int32, torch.int16):
            if part.dim() != 1:
                raise ValueError(f"a token-id part must be 1-D, got shape {tuple(part.shape)}")
            return part.long()
        if part.dim() != 2:
            raise ValueError(f"a soft-token part must be (n, hidden), got shape {tuple(part.shape)}")
        return None
    return torch.tensor(list(part), dtype=torch.long)


def collate(samples: Sequence[Sequence[Part]], targets: Sequence[Sequence[int]] | None = None, *,
            pad_token_id: int, padding_side: str = "right", embed: nn.Module | None = None,
            device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch of part lists (see the module docstring) into model inputs.

    samples: B lists of parts (token ids or (n, hidden) soft tokens), the prompt of each sample
    targets: B lists of target ids (EOS included, see ``target_ids``) appended after the prompt; gives
             ``labels`` (B, T): -100 on prompt, soft tokens and padding, the target ids elsewhere
    embed:   the LM's input embedding; needed when a sample has soft tokens. Given, the batch carries
             ``inputs_embeds`` (B, T, hidden) in the embedding's dtype (padding rows are zeros) instead of
             ``input_ids``
    device:  where the batch goes (default: the embedding's device, else the CPU)
    -> dict with ``input_ids`` (B, T) or ``inputs_embeds``, ``attention_mask`` (B, T) long, ``soft_mask`` (B, T)
       bool, [``labels`` (B, T)]
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if targets is not None and len(targets) != len(samples):
        raise ValueError(f"{len(samples)} samples but {len(targets)} targets")
    soft = any(_as_ids(p) is None for s in samples for p in s)
    if soft and embed is None:
        raise ValueError("samples with soft tokens need the LM's input embedding (embed=...)")
    weight = getattr(embed, "weight", None) if embed is not None else None
    dev = torch.device(device) if device is not None else (weight.device if weight is not None
                                                           else torch.device("cpu"))
    use_embeds = embed is not None
    seqs: list[torch.Tensor] = []   # (L,) ids or (L, hidden) embeddings per sample
    labels: list[torch.Tensor] = []
    softs: list[torch.Tensor] = []
    for b, parts in enumerate(samples):
        pieces: list[torch.Tensor] = []
        is_soft: list[torch.Tensor] = []
        for p in parts:
            ids = _as_ids(p)
            if ids is None:
                pieces.append(p.to(device=dev, dtype=weight.dtype if weight is not None else p.dtype))
                is_soft.append(torch.ones(p.shape[0], dtype=torch.bool))
            elif ids.numel():
                pieces.append(embed(ids.to(dev)) if use_embeds else ids)
                is_soft.append(torch.zeros(ids.numel(), dtype=torch.bool))
        n_prompt = sum(x.shape[0] for x in pieces)
        lab = [torch.full((n_prompt,), IGNORE_INDEX, dtype=torch.long)]
        if targets is not None:
            t = torch.tensor(list(targets[b]), dtype=torch.long)
            pieces.append(embed(t.to(dev)) if use_embeds else t)
            is_soft.append(torch.zeros(t.numel(), dtype=torch.bool))
            lab.append(t)
        if not pieces:
            raise ValueError(f"sample {b} of the batch is empty")
        seqs.append(torch.cat(pieces))
        labels.append(torch.cat(lab))
        softs.append(torch.cat(is_soft))
    length = max(s.shape[0] for s in seqs)
    bsz = len(seqs)
    mask = torch.zeros(bsz, length, dtype=torch.long)
    soft_mask = torch.zeros(bsz, length, dtype=torch.bool)
    lab_out = torch.full((bsz, length), IGNORE_INDEX, dtype=torch.long)
    if use_embeds:
        out = seqs[0].new_zeros(bsz, length, seqs[0].shape[1])
    else:
        out = torch.full((bsz, length), pad_token_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        n = s.shape[0]
        sl = slice(length - n, length) if padding_side == "left" else slice(0, n)
        out[b, sl] = s
        mask[b, sl] = 1
        soft_mask[b, sl] = softs[b]
        lab_out[b, sl] = labels[b]
    batch = {"inputs_embeds" if use_embeds else "input_ids": out.to(dev), "attention_mask": mask.to(dev),
             "soft_mask": soft_mask.to(dev)}
    if targets is not None:
        batch["labels"] = lab_out.to(dev)
    return batch


HF_KEYS = ("input_ids", "inputs_embeds", "attention_mask", "labels")


def hf_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of a ``collate`` batch that a Hugging Face model's ``forward``/``generate`` accepts."""
    return {k: v for k, v in batch.items() if k in HF_KEYS}


def text_batch(tokenizer: Any, prompts: Sequence[Sequence[int]], targets: Sequence[str] | None = None, *,
               max_target_tokens: int | None = None, padding_side: str = "right",
               device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Token-only batch from prompt ids (see ``prompt_ids``) and optional target texts."""
    tgt = None if targets is None else [target_ids(tokenizer, t, max_target_tokens) for t in targets]
    return collate([[p] for p in prompts], tgt, pad_token_id=pad_id(tokenizer), padding_side=padding_side,
                   device=device)


# --------------------------------------------------------------------------- loss and training
def target_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """labels (B, T) -> (rows, cols, next ids): position (rows[i], cols[i]) predicts target token ids[i]."""
    shifted = labels[:, 1:]
    rows, cols = (shifted != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows, cols, shifted[rows, cols]


def causal_lm_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions whose label is not -100 (target tokens only).

    Where the LM's logits are a plain linear map (``lm_forward.plain_head``) the vocabulary projection runs
    only on those positions; the prompt's (B, T, vocab) logits are never materialised.
    """
    rows, cols, ids = target_positions(batch["labels"])
    if rows.numel() == 0:
        raise ValueError("the batch has no target tokens (every label is -100)")
    logits = logits_at(model, dict(batch), rows, cols)
    return F.cross_entropy(logits, ids.to(logits.device))


def make_optimizer(groups: Iterable[tuple[Iterable[nn.Parameter], float]], weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW | None:
    """AdamW over (params, lr) groups; weight decay on matrices only (not on biases and norm weights).
    None when there is nothing to train."""
    param_groups = []
    for params, lr in groups:
        params = [p for p in params if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        rest = [p for p in params if p.dim() < 2]
        param_groups += [g for g in ({"params": decay, "lr": lr, "weight_decay": weight_decay},
                                     {"params": rest, "lr": lr, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(param_groups, betas=betas) if param_groups else None


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer | None, params: Sequence[nn.Parameter],
                   grad_clip: float) -> float:
    """backward, clip the global grad norm to ``grad_clip`` (0 = no clipping), step; returns the loss value.
    A loss that reaches no trainable parameter (e.g. a frozen LM without soft tokens) is only evaluated."""
    if optimizer is not None and loss.requires_grad:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
    return float(loss.detach())


def train_step(model: nn.Module, batch: Mapping[str, torch.Tensor], optimizer: torch.optim.Optimizer | None,
               params: Sequence[nn.Parameter], grad_clip: float) -> float:
    """One optimisation step on the target-token loss of ``batch``; returns the loss before the step."""
    model.train()
    return optimizer_step(causal_lm_loss(model, batch), optimizer, params, grad_clip)


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters with ``requires_grad`` (the rest is rebuilt from the frozen backbone)."""
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Inverse of ``trainable_state``: copies ``state`` into the named parameters (every name must exist)."""
    params = dict(module.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise KeyError(f"state has parameters the model lacks: {unknown[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class TrainableLMState:
    """``state_dict`` / ``load_state_dict`` of an LM adapter whose ``self.module`` (None before ``setup``) holds
    a frozen backbone and trainable parts: only the trainable parameters are saved and restored."""

    module: nn.Module | None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.module) if self.module is not None else {}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        if self.module is not None:
            load_trainable_state(self.module, state)
