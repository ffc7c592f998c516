"""How much do the text nodes, and the text graph's edges, reach Graph4MM's soft tokens? A diagnostic.

Builds Graph4MM with its synth-gen preset (seed 0, one thread; alignment included unless overridden) and, on the
test samples, prints: the share of the MM-QFormer's shared self-attention that its queries spend on the text nodes
(the rest stays on the queries), and the relative change of the soft tokens, ||T_without - T_with|| / ||T_with||,
when the text graph's edges are dropped (``text_structure=false``) and when the image graph's are.

    .venv/bin/python bench/graph4mm_text_route.py [KEY=VALUE ...]     # Graph4MM config overrides
"""

from __future__ import annotations

import sys

import torch

from mmbench.api import GenerationTrainingData
from mmbench.config import build_config, parse_overrides
from mmbench.data import load_task_data
from mmbench.models import mm_qformer
from mmbench.models.graph4mm import GEN_PRESETS, Graph4MMConfig, Graph4MMGenerator
from mmbench.tasks import get_card


def text_share_recorder(shares: list[float]):
    """A ``QFormerBlock._shared`` that also appends the mean attention share of the text keys (real ones only)."""
    plain = mm_qformer.QFormerBlock._shared

    def shared(block, q, text, text_pad):
        if text is not None:
            x = torch.cat([q, text], 1)
            pad = torch.cat([text_pad.new_zeros(q.shape[:2]), text_pad], 1)
            w = block.self_attn(q, x, x, key_padding_mask=pad, need_weights=True)[1]   # (B, Q, Q + n_t)
            shares.append(float(w[:, :, q.shape[1]:].sum(-1).mean()))
        return plain(block, q, text, text_pad)
    return plain, shared


@torch.no_grad()
def tokens(model: Graph4MMGenerator, samples: list) -> torch.Tensor:
    """All soft tokens of ``samples`` in order, flattened: (total tokens, H)."""
    out = [t for d in model.soft_tokens(samples) for _, t in sorted(d.items())]
    return torch.cat(out).float()


def main() -> None:
    torch.set_num_threads(1)
    data = load_task_data(get_card("synth-gen"))
    g = data.graph
    samples = {k: [data.assemble(v) for v in g.splits[k].tolist()] for k in ("train", "valid", "test")}
    view = GenerationTrainingData(task="synth-gen", train=tuple(samples["train"]),
                                  train_targets=tuple(g.targets[int(s.id)] for s in samples["train"]),
                                  valid=tuple(samples["valid"]), test=tuple(samples["test"]), max_new_tokens=16)
    over = parse_overrides(sys.argv[1:])
    model = Graph4MMGenerator(build_config(Graph4MMConfig, "synth-gen", GEN_PRESETS, over, "graph4mm"))
    model.setup(view, seed=0)
    model.module.eval()
    test = samples["test"]
    shares: list[float] = []
    plain, shared = text_share_recorder(shares)
    mm_qformer.QFormerBlock._shared = shared
    try:
        full = torch.cat([tokens(model, test[i:i + 8]) for i in range(0, len(test), 8)])
    finally:
        mm_qformer.QFormerBlock._shared = plain
    print(f"attention share of the text nodes in the MM-QFormer's self-attention: {sum(shares) / len(shares):.4f}")
    for name in ("text_struct", "image_struct"):
        module = getattr(model.module, name)
        module.use_structure = False
        try:
            cut = torch.cat([tokens(model, test[i:i + 8]) for i in range(0, len(test), 8)])
        finally:
            module.use_structure = True
        print(f"{name} edges dropped: soft tokens change by {float((cut - full).norm() / full.norm()):.4f} "
              f"(relative norm)")


if __name__ == "__main__":
    main()
