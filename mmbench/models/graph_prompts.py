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

Layouts (``PromptLayout``, by name in ``LAYOUTS``): how the pieces are written. ``context`` (the default, above)
lists each neighbour on its own line with its kind; ``related`` is the layout of the ``lm-cls`` baseline
(``baselines/lm_cls.py``): "Node: <target text>\nRelated: <text> | <text> | ...", 1-hop neighbours only, so
that a graph-LM classifier can read exactly the text that baseline reads, its soft tokens placed after each
node's text as in ``context``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmbench.api import GraphSample
from mmbench.models.lm_utils import PROMPT_SUFFIX, Part, special_prefix, token_ids

CONTEXT_HEADER = "\nContext:"


@dataclass(frozen=True)
class PromptLayout:
    """How the pieces of a graph prompt are written (module docstring).

    target:    the target's piece, ``{text}`` = its text
    header:    written once before the first neighbour piece
    neighbour: each neighbour's piece, ``{kind}`` and ``{text}`` (trailing spaces dropped when it has no text)
    separator: written before every neighbour piece but the first
    max_hop:   neighbours farther than this hop are left out (None: every node of the sample)
    """

    target: str = "{text}"
    header: str = CONTEXT_HEADER
    neighbour: str = "\n[{kind}] {text}"
    separator: str = ""
    max_hop: int | None = None


LAYOUTS = {"context": PromptLayout(),
           "related": PromptLayout(target="Node: {text}", header="\nRelated:", neighbour=" {text}", separator=" |",
                                   max_hop=1)}


def hop_priority(sample: GraphSample) -> list[int]:
    """Neighbour positions 1..n-1 ordered nearest first (unreachable last, then by sample position)."""
    far = 1 << 30
    return sorted(range(1, len(sample.nodes)),
                  key=lambda j: (sample.nodes[j].hop if sample.nodes[j].hop >= 0 else far, j))


def neighbour_text(sample: GraphSample, j: int, layout: PromptLayout = LAYOUTS["context"]) -> str:
    """Neighbour ``j``'s piece under ``layout`` (``"\\n[kind] text"``, ``"\\n[kind]"`` without text, by default)."""
    node = sample.nodes[j]
    text = (node.text or "").strip()
    piece = layout.neighbour.format(kind=node.kind, text=text)
    return piece if text else piece.rstrip()


def interleaved_prompt(tokenizer: Any, sample: GraphSample, soft: Mapping[int, torch.Tensor], max_tokens: int,
                       suffix: str = PROMPT_SUFFIX, min_piece_tokens: int = 8,
                       layout: PromptLayout = LAYOUTS["context"]) -> tuple[list[Part], list[int]]:
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
    target_text = layout.target.format(text=sample.nodes[0].text) if sample.nodes[0].text else None
    first_ids = token_ids(tokenizer, target_text, max(budget - n_soft0, 0) if n_soft0 <= budget else budget)
    keep_soft0 = target_soft is not None and len(first_ids) + n_soft0 <= budget
    budget -= len(first_ids) + (n_soft0 if keep_soft0 else 0)
    admitted = [0] if first_ids or keep_soft0 else []
    hdr = token_ids(tokenizer, layout.header)
    # position -> (ids without separator, ids with it, soft tokens or None, text tokens kept or None = all)
    pieces: dict[int, tuple[list[int], list[int], torch.Tensor | None, int | None]] = {}
    candidates = [j for j in hop_priority(sample) if ((sample.nodes[j].text or "").strip() or j in soft)
                  and (layout.max_hop is None or 0 <= sample.nodes[j].hop <= layout.max_hop)]
    if candidates and budget > len(hdr):
        budget -= len(hdr)
        for j in candidates:
            text = neighbour_text(sample, j, layout)
            ids = token_ids(tokenizer, text)
            ids_sep = token_ids(tokenizer, layout.separator + text) if layout.separator else ids
            s = soft.get(j)
            n_s = 0 if s is None else int(s.shape[0])
            if len(ids_sep) + n_s <= budget:   # budgeted with the separator: an upper bound for the first piece
                pieces[j] = (ids, ids_sep, s, None)
                budget -= len(ids_sep) + n_s
                continue
            if budget - n_s >= min_piece_tokens:
                pieces[j] = (ids, ids_sep, s, budget - n_s)
            break
    order = sorted(pieces)
    parts: list[Part] = [head + first_ids]
    if keep_soft0:
        parts.append(target_soft)
    if order:
        parts.append(hdr)
        for k, j in enumerate(order):
            ids, ids_sep, s, cut = pieces[j]
            text_ids = ids_sep if k else ids
            parts += [text_ids if cut is None else text_ids[:cut]] + ([s] if s is not None else [])
    parts.append(tail)
    return [p for p in parts if (p.shape[0] if isinstance(p, torch.Tensor) else len(p))], admitted + order


def prefix_prompt(tokenizer: Any, sample: GraphSample, soft: Sequence[torch.Tensor], max_tokens: int,
                  suffix: str = PROMPT_SUFFIX, min_piece_tokens: int = 8,
                  layout: PromptLayout = LAYOUTS["context"]) -> tuple[list[Part], list[int]]:
    """All ``soft`` token groups first (in the order given), then the text prompt of ``interleaved_prompt``
    without soft tokens in the budget left."""
    tokens = [s for s in soft if s.shape[0]]
    n = sum(int(s.shape[0]) for s in tokens)
    parts, admitted = interleaved_prompt(tokenizer, sample, {}, max(max_tokens - n, 0), suffix, min_piece_tokens,
                                         layout)
    return [*tokens, *parts], admitted
