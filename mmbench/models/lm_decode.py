"""Free decoding and class-name scoring with a causal LM (plain, LoRA or prefix-tuned; token or soft-token
prompts), on the LM's device.

``generate_texts`` decodes greedily (``num_beams == 1``) or by beam search, never by sampling and never
teacher-forced, with mmbench's own loop over ``lm_forward.lm_hidden`` and a key/value cache: the same code path
for every model kind (Hugging Face ``generate`` does not accept ``inputs_embeds`` for peft prefix-tuned models).
Greedy output equals Hugging Face's greedy ``generate`` (a test checks). Beam search keeps ``num_beams``
hypotheses per sample, scores finished ones by their summed log-probability divided by their length in
generated tokens (EOS included; length penalty 1), and stops a sample once it has ``num_beams`` finished
hypotheses (early stopping). The text returned is the continuation only, decoded with
``skip_special_tokens``, stripped and cut at the first newline.

``label_log_likelihoods`` scores candidate continuations (class names) after each prompt: the mean per-token
log-probability of each label. The prompt is run once per sample (left-padded batch) and its key/value cache
is repeated for the candidates, so the cost is one prompt pass plus one short pass over the label tokens.

``calibrated`` removes a zero-shot LM's preference for some label words whatever the input (a small LM's
failure mode on unseen class names): each label's score minus its mean score over reference prompts.
``calibration`` names where the reference prompts come from:
  none          no calibration
  content-free  the prompt frame filled with ``CONTENT_FREE`` strings: contextual calibration (Zhao et al.,
                "Calibrate Before Use", ICML 2021, arXiv 2102.09690), log p(y | x) - log p(y | content-free)
  domain        the prompts of (at most ``calibration_nodes``, evenly spaced) training nodes: a prior over the
                task's own inputs, as domain-conditional PMI (Holtzman et al., "Surface Form Competition",
                EMNLP 2021, arXiv 2104.08315) conditions on the domain. Inductive: no valid/test input is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.errors import ConfigError
from mmbench.models.lm_forward import head_logits, lm_hidden, model_device, unwrap
from mmbench.models.lm_utils import Part, collate, pad_id

CALIBRATIONS = ("none", "content-free", "domain")
CONTENT_FREE = ("N/A", "", "[MASK]")   # Zhao et al. 2021's content-free inputs


def clean_generation(text: str) -> str:
    """Strip, then keep the text before the first newline."""
    return text.strip().split("\n", 1)[0].strip()


def _inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "inputs_embeds") if k in batch}


@torch.no_grad()
def greedy_ids(model: nn.Module, batch: Mapping[str, torch.Tensor], max_new_tokens: int, eos_id: int,
               pad: int) -> torch.Tensor:
    """Left-padded prompts -> (B, n <= max_new_tokens) new token ids (pad after each row's EOS)."""
    mask = batch["attention_mask"]
    bsz = mask.shape[0]
    hidden, past, full = lm_hidden(model, **_inputs(batch), attention_mask=mask, use_cache=True)
    logits = head_logits(model, hidden[:, -1])
    done = torch.zeros(bsz, dtype=torch.bool, device=logits.device)
    out: list[torch.Tensor] = []
    for step in range(int(max_new_tokens)):
        nxt = torch.where(done, torch.full_like(done, pad, dtype=torch.long), logits.argmax(-1))
        out.append(nxt)
        done |= nxt == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        full = torch.cat([full, torch.ones(bsz, 1, dtype=full.dtype, device=full.device)], 1)
        hidden, past, full = lm_hidden(model, input_ids=nxt[:, None], attention_mask=full, past_key_values=past,
                                       use_cache=True)
        logits = head_logits(model, hidden[:, -1])
    return torch.stack(out, 1) if out else torch.zeros(bsz, 0, dtype=torch.long)


@torch.no_grad()
def beam_ids(model: nn.Module, batch: Mapping[str, torch.Tensor], max_new_tokens: int, num_beams: int,
             eos_id: int, pad: int) -> torch.Tensor:
    """Beam search (module docstring): left-padded prompts -> (B, n) ids of each sample's best hypothesis."""
    mask = batch["attention_mask"]
    bsz, k = mask.shape[0], int(num_beams)
    hidden, past, full = lm_hidden(model, **_inputs(batch), attention_mask=mask, use_cache=True)
    logp = F.log_softmax(head_logits(model, hidden[:, -1]), -1)                    # (B, V)
    dev = logp.device
    past.batch_repeat_interleave(k)
    full = full.repeat_interleave(k, 0)
    # every beam of a sample starts from the same prompt: only the first may seed the search
    beam_scores = torch.full((bsz, k), float("-inf"), device=dev)
    beam_scores[:, 0] = 0.0
    logp = logp.repeat_interleave(k, 0)                                             # (B*k, V)
    seqs = torch.zeros(bsz * k, 0, dtype=torch.long, device=dev)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(bsz)]
    done = [False] * bsz
    vocab = logp.shape[-1]
    for step in range(int(max_new_tokens)):
        cand = (beam_scores.view(-1, 1) + logp).view(bsz, k * vocab)               # (B, k*V)
        top_scores, top_idx = cand.topk(2 * k, dim=1)
        next_beam = torch.zeros(bsz, k, dtype=torch.long, device=dev)
        next_tok = torch.full((bsz, k), pad, dtype=torch.long, device=dev)
        next_scores = torch.full((bsz, k), float("-inf"), device=dev)
        for b in range(bsz):
            if done[b]:
                continue
            filled = 0
            for score, idx in zip(top_scores[b].tolist(), top_idx[b].tolist(), strict=True):
                beam, tok = divmod(idx, vocab)
                if score == float("-inf"):
                    break
                if tok == eos_id:
                    hyp = seqs[b * k + beam].tolist() + [tok]
                    finished[b].append((score / len(hyp), hyp))
                    continue
                next_beam[b, filled], next_tok[b, filled], next_scores[b, filled] = beam, tok, score
                filled += 1
                if filled == k:
                    break
            if len(finished[b]) >= k:
                done[b] = True
        if all(done):
            break
        src = (torch.arange(bsz, device=dev)[:, None] * k + next_beam).view(-1)   # (B*k,)
        seqs = torch.cat([seqs[src], next_tok.view(-1, 1)], 1)
        beam_scores = next_scores
        if step == max_new_tokens - 1:
            break
        past.reorder_cache(src)
        full = torch.cat([full[src], torch.ones(bsz * k, 1, dtype=full.dtype, device=dev)], 1)
        hidden, past, full = lm_hidden(model, input_ids=next_tok.view(-1, 1), attention_mask=full,
                                       past_key_values=past, use_cache=True)
        logp = F.log_softmax(head_logits(model, hidden[:, -1]), -1)
    best: list[list[int]] = []
    for b in range(bsz):
        hyps = list(finished[b])
        if not done[b]:
            for j in range(k):
                if float(beam_scores[b, j]) > float("-inf"):
                    seq = seqs[b * k + j].tolist()
                    hyps.append((float(beam_scores[b, j]) / max(len(seq), 1), seq))
        best.append(max(hyps, key=lambda h: h[0])[1] if hyps else [])
    width = max((len(x) for x in best), default=0)
    return torch.tensor([x + [pad] * (width - len(x)) for x in best], dtype=torch.long).view(bsz, width)


@torch.no_grad()
def generate_texts(model: nn.Module, tokenizer: Any, prompts: Sequence[Sequence[int]] | Mapping[str, torch.Tensor],
                   max_new_tokens: int, num_beams: int = 1) -> list[str]:
    """Decode freely (greedy or beam search); the continuation only, one str per sample.

    prompts: B prompt id lists (left-padded here), or a batch from ``collate(..., padding_side="left")`` with
             ``input_ids`` or ``inputs_embeds`` and ``attention_mask``
    """
    if isinstance(prompts, Mapping):
        batch = dict(prompts)
    else:
        batch = collate([[p] for p in prompts], pad_token_id=pad_id(tokenizer), padding_side="left",
                        device=model_device(model))
    mask = batch["attention_mask"]
    if mask.shape[0] == 0:
        return []
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("generation batches must be left-padded (the last position of every row must be real)")
    was_training = model.training
    model.eval()
    try:
        eos, pad = int(tokenizer.eos_token_id), pad_id(tokenizer)
        if int(num_beams) > 1:
            ids = beam_ids(model, batch, max_new_tokens, num_beams, eos, pad)
        else:
            ids = greedy_ids(model, batch, max_new_tokens, eos, pad)
    finally:
        model.train(was_training)
    return [clean_generation(t) for t in tokenizer.batch_decode(ids.cpu(), skip_special_tokens=True)]


def _length_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Index batches sorted by length (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s:s + size] for s in range(0, len(order), size)]


def _part_length(parts: Sequence[Part]) -> int:
    return sum(len(p) if not isinstance(p, torch.Tensor) else p.shape[0] for p in parts)


def label_tensors(labels: Sequence[Sequence[int]], pad_token_id: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """L non-empty token-id lists -> ids (L, m) padded with ``pad_token_id`` and their mask (L, m)."""
    if any(len(x) == 0 for x in labels):
        raise ValueError("every label continuation needs at least one token")
    n_lab, m_max = len(labels), max(len(x) for x in labels)
    lab_ids = torch.full((n_lab, m_max), pad_token_id, dtype=torch.long, device=device)
    lab_mask = torch.zeros((n_lab, m_max), dtype=torch.long, device=device)
    for j, x in enumerate(labels):
        lab_ids[j, :len(x)] = torch.tensor(list(x), device=device)
        lab_mask[j, :len(x)] = 1
    return lab_ids, lab_mask


def label_scores(model: nn.Module, batch: Mapping[str, torch.Tensor], lab_ids: torch.Tensor,
                 lab_mask: torch.Tensor) -> torch.Tensor:
    """(b, L) fp32: mean log-probability per token of each label after each LEFT-padded prompt of ``batch``.

    The prompt runs once; its key/value cache is repeated for the L labels (one short pass over their tokens).
    Differentiable: training can back-propagate a loss over these scores into the prompt's soft tokens.
    lab_ids, lab_mask: (L, m) from ``label_tensors``.
    """
    b, (n_lab, m_max) = batch["attention_mask"].shape[0], lab_ids.shape
    hidden, past, full = lm_hidden(model, **_inputs(batch), attention_mask=batch["attention_mask"],
                                   use_cache=m_max > 1)
    lp_first = F.log_softmax(head_logits(model, hidden[:, -1]), -1)                    # (b, V)
    total = lp_first[:, lab_ids[:, 0]]                                                  # (b, L)
    if m_max > 1:
        past.batch_repeat_interleave(n_lab)                                             # (b*L, ...)
        full = torch.cat([full.repeat_interleave(n_lab, 0), lab_mask[:, :-1].repeat(b, 1)], 1)
        rest, _, _ = lm_hidden(model, input_ids=lab_ids[:, :-1].repeat(b, 1), attention_mask=full,
                               past_key_values=past, use_cache=True)
        lp = F.log_softmax(head_logits(model, rest), -1)                                # (b*L, m-1, V)
        got = lp.gather(2, lab_ids[:, 1:].repeat(b, 1).unsqueeze(-1)).squeeze(-1)
        total = total + (got * lab_mask[:, 1:].repeat(b, 1)).sum(1).view(b, n_lab)
    return total / lab_mask.sum(1).float()


@torch.no_grad()
def label_log_likelihoods(model: nn.Module, prompts: Sequence[Sequence[Part]], labels: Sequence[Sequence[int]], *,
                          pad_token_id: int, batch_size: int = 16, progress: Any = None) -> torch.Tensor:
    """(P, L) fp32 on the CPU: mean log-probability per token of each label continuation after each prompt.

    prompts: P part lists (token ids and/or (n, hidden) soft tokens, see ``lm_utils.collate``)
    labels:  L non-empty token-id lists (e.g. the tokens of " {class name}")
    """
    dev = model_device(model)
    embed = unwrap(model).get_input_embeddings()
    soft = any(isinstance(p, torch.Tensor) and p.is_floating_point() for s in prompts for p in s)
    lab_ids, lab_mask = label_tensors(labels, pad_token_id, dev)
    out = torch.zeros(len(prompts), len(labels))
    was_training = model.training
    model.eval()
    bar = progress.bar(len(prompts), "score class names", unit="prompt") if progress is not None else None
    try:
        for idx in _length_batches([_part_length(p) for p in prompts], batch_size):
            batch = collate([prompts[i] for i in idx], pad_token_id=pad_token_id, padding_side="left",
                            embed=embed if soft else None, device=dev)
            out[idx] = label_scores(model, batch, lab_ids, lab_mask).float().cpu()
            if bar is not None:
                bar.update(len(idx))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return out


def calibrated(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """scores (P, L), reference (R, L) label scores after R reference prompts -> (P, L) calibrated scores
    (module docstring): ``scores - reference.mean(0)``."""
    return scores - reference.mean(0, keepdim=True).to(scores)


def check_calibration(model: str, calibration: str) -> None:
    """Refuse an unknown ``calibration`` (ConfigError naming the key; ``calibration_nodes`` has its range rule in
    ``mmbench.config``)."""
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"{model}: calibration={calibration!r}: expected {' or '.join(CALIBRATIONS)}")


def reference_inputs(calibration: str, train_nodes: Sequence[int], n: int,
                     content_free: Callable[[Sequence[str]], list[Any]],
                     of_nodes: Callable[[list[int]], list[Any]]) -> list[Any]:
    """The reference inputs of ``calibration`` (module docstring), built by the adapter's own prompt code:
    ``content_free(CONTENT_FREE)`` or ``of_nodes(calibration_subset(train_nodes, n))``."""
    if calibration == "content-free":
        return content_free(CONTENT_FREE)
    return of_nodes(calibration_subset(train_nodes, n))


def calibration_subset(nodes: Sequence[int], n: int) -> list[int]:
    """At most ``n`` of ``nodes``, evenly spaced over their sorted order (deterministic, seed-free)."""
    ordered = sorted(int(v) for v in nodes)
    if len(ordered) <= n:
        return ordered
    return [ordered[(i * len(ordered)) // n] for i in range(n)]

