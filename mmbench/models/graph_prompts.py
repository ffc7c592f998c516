"""An assembled sample as one interleaved LM input: node texts in sample order with each node's soft tokens
(e.g. its image's tokens) right after its text. Graph4MM places its MM-QFormer tokens this way (as the public
code puts them at each section's image slot); VW-LMM reads the whole sub-graph as such a sequence ("graph as a
sequence").

Layout of one prompt (parts for ``lm_utils.collate``):

  [special prefix] target text [target soft tokens] "\\nContext:"
      "\\n[kind] text" [soft tokens]      for each admitted neighbour, in sample order
  suffix ("\\nSummary:" for generation, "\\nCategory:" for classification)

Budget rule (``max_tokens`` counts text tokens and soft tokens alike): the target's piece comes first; its text
is cut (from the end) only if the target alone overflows, and its soft tokens are dropped only if they alone
do not fit. Neighbour pieces are admitted in ``priority`` order (nearest hop first, unreachable nodes last, ties
by sample position) while they fit whole; the first one that does not fit keeps its soft tokens and as much of
its text as fits if at least ``min_piece_tokens`` text tokens remain after them, else it is dropped; every
piece after it is dropped. So the farthest pieces go first, and a node's soft tokens never outlive its text
piece. Admitted pieces keep their sample order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mmbench.api import GraphSample
from mmbench.models.lm_utils import PROMPT_SUFFIX, Part, special_prefix, token_ids

CONTEXT_HEADER = "\nContext:"


def hop_priority(sample: GraphSample) -> list[int]:
    """Neighbour positions 1..n-1 ordered nearest first (unreachable last, then by sample position)."""
    far = 1 << 30
    return sorted(range(1, len(sample.nodes)),
                  key=lambda j: (sample.nodes[j].hop if sample.nodes[j].hop >= 0 else far, j))


def neighbour_text(sample: GraphSample, j: int) -> str:
    """``"\\n[kind] text"`` of neighbour ``j`` (``"\\n[kind]"`` for a node without text)."""
    node = sample.nodes[j]
    text = (node.text or "").strip()
    return f"\n[{node.kind}] {text}" if text else f"\n[{node.kind}]"


def interleaved_prompt(tokenizer: Any, sample: GraphSample, soft: Mapping[int, torch.Tensor], max_tokens: int,
                       suffix: str = PROMPT_SUFFIX, min_piece_tokens: int = 8,
                       header: str = CONTEXT_HEADER) -> tuple[list[Part], list[int]]:
    """The prompt parts of ``sample`` (module docstring) and the sample positions whose pieces were admitted
    (the target, position 0, included when any of it fits).

    soft: sample position -> (n, hidden) soft tokens placed after that node's text (positions without an
          entry get none; a neighbour without text but with soft tokens still gets a ``"\\n[kind]"`` piece)
    """
    head = special_prefix(tokenizer)
    tail = token_ids(tokenizer, suffix)
    budget = max(0, max_tokens - len(head) - len(tail))
    target_soft = soft.get(0)
    n_soft0 = 0 if target_soft is None else int(target_soft.shape[0])
    first_ids = token_ids(tokenizer, sample.nodes[0].text, max(budget - n_soft0, 0) if n_soft0 <= budget else budget)
    keep_soft0 = target_soft is not None and len(first_ids) + n_soft0 <= budget
    budget -= len(first_ids) + (n_soft0 if keep_soft0 else 0)
    admitted = [0] if first_ids or keep_soft0 else []
    hdr = token_ids(tokenizer, header)
    pieces: dict[int, list[Part]] = {}
    candidates = [j for j in hop_priority(sample) if (sample.nodes[j].text or "").strip() or j in soft]
    if candidates and budget > len(hdr):
        budget -= len(hdr)
        for j in candidates:
            ids = token_ids(tokenizer, neighbour_text(sample, j))
            s = soft.get(j)
            n_s = 0 if s is None else int(s.shape[0])
            if len(ids) + n_s <= budget:
                pieces[j] = [ids] + ([s] if s is not None else [])
                budget -= len(ids) + n_s
                continue
            if budget - n_s >= min_piece_tokens:
                pieces[j] = [ids[: budget - n_s]] + ([s] if s is not None else [])
            break
    order = sorted(pieces)
    parts: list[Part] = [head + first_ids]
    if keep_soft0:
        parts.append(target_soft)
    if order:
        parts.append(hdr)
        for j in order:
            parts += pieces[j]
    parts.append(tail)
    return [p for p in parts if (p.shape[0] if isinstance(p, torch.Tensor) else len(p))], admitted + order


def prefix_prompt(tokenizer: Any, sample: GraphSample, soft: Sequence[torch.Tensor], max_tokens: int,
                  suffix: str = PROMPT_SUFFIX, min_piece_tokens: int = 8) -> tuple[list[Part], list[int]]:
    """All ``soft`` token groups first (in the order given), then the text prompt of ``interleaved_prompt``
    without soft tokens in the budget left."""
    tokens = [s for s in soft if s.shape[0]]
    n = sum(int(s.shape[0]) for s in tokens)
    parts, admitted = interleaved_prompt(tokenizer, sample, {}, max(max_tokens - n, 0), suffix, min_piece_tokens)
    return [*tokens, *parts], admitted
