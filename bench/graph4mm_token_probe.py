"""Do Graph4MM's soft tokens carry the synth-gen scene colour? A diagnostic, not a benchmark.

Trains Graph4MM with its synth-gen preset in-process (seed 0, one thread), and before training and after each
epoch fits a logistic regression from the MM-QFormer tokens of one image slot (the scene's, and the target's) of
the training samples to their theme, scored on the test samples (chance 1/8). For comparison, the same
regression on the scene image's frozen EfficientNet-Lite0 features scores about 0.93.

    .venv/bin/python bench/graph4mm_token_probe.py [KEY=VALUE ...]     # Graph4MM config overrides
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from mmbench.api import GenerationTrainingData
from mmbench.config import build_config
from mmbench.data import load_task_data
from mmbench.models.graph4mm import GEN_PRESETS, Graph4MMConfig, Graph4MMGenerator
from mmbench.tasks import get_card


def slot_tokens(model: Graph4MMGenerator, samples: list, themes: list[str]) -> tuple[np.ndarray, ...]:
    """(scene slot tokens (n, q * H), target slot tokens (n, q * H), themes (n,)) in eval mode."""
    model.module.eval()
    scene, target = [], []
    with torch.no_grad():
        for i in range(0, len(samples), 16):
            batch = samples[i:i + 16]
            for s, tok in zip(batch, model.soft_tokens(batch), strict=True):
                j = next(k for k, n in enumerate(s.nodes) if n.kind == "scene")
                scene.append(tok[j].flatten().float().numpy())
                target.append(tok[0].flatten().float().numpy())
    model.module.train()
    return np.array(scene), np.array(target), np.array(themes)


def probe(model: Graph4MMGenerator, split: dict, tag: str) -> None:
    tr, te = (slot_tokens(model, *split[k]) for k in ("train", "test"))
    for name, i in (("scene", 0), ("target", 1)):
        clf = LogisticRegression(max_iter=3000).fit(tr[i], tr[2])
        acc = float((clf.predict(te[i]) == te[2]).mean())
        print(f"{tag:<10} theme from the {name} slot's tokens: test accuracy {acc:.2f}", flush=True)


def main() -> None:
    torch.set_num_threads(1)
    over = {}
    for arg in sys.argv[1:]:
        k, v = arg.split("=", 1)
        over[k] = v == "true" if v in ("true", "false") else int(v) if v.isdigit() else v
    data = load_task_data(get_card("synth-gen"))
    g = data.graph
    samples = {k: [data.assemble(v) for v in g.splits[k].tolist()] for k in ("train", "valid", "test")}
    targets = {k: [g.targets[int(s.id)] for s in samples[k]] for k in samples}
    view = GenerationTrainingData(task="synth-gen", train=tuple(samples["train"]),
                                  train_targets=tuple(targets["train"]), valid=tuple(samples["valid"]),
                                  test=tuple(samples["test"]), max_new_tokens=16)
    model = Graph4MMGenerator(build_config(Graph4MMConfig, "synth-gen", GEN_PRESETS, over, "graph4mm"))
    model.setup(view, seed=0)
    split = {k: (samples[k], [t.split()[1] for t in targets[k]]) for k in ("train", "test")}
    probe(model, split, "untrained")
    for epoch in range(1, model.config.epochs + 1):
        loss = model.train_epoch(epoch)
        probe(model, split, f"epoch {epoch}")
        print(f"           (training loss {loss:.4f})", flush=True)


if __name__ == "__main__":
    main()
