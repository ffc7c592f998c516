"""How many training steps does an LM need to name synth-gen's scene colour from soft tokens? A diagnostic.

Every LM-based model on synth-gen names the theme at chance when it is in the scene image only (README, Graph4MM
section). This script separates the reasons, on synth-gen's graph generated with the theme in the scene image only
(``p_theme_text`` 0 instead of 0.5; everything else as tasks/synth-gen.yaml), measuring the share of the 200 test
samples whose theme word is the most likely of the 8 theme names at the theme's position (teacher-forced):

  isolated  a frozen SmolLM2 reads ONE soft token, a trained Linear of the scene image's frozen EfficientNet-Lite0
            features, between "Image:" and " The colour theme is the"; loss on the theme token
            (``--far``: five lines of neighbour text and "Summary: the" after the token instead)
  pipeline  Graph4MM's own prompt and modules (``use_qformer=false``: each image slot's tokens are its projected
            image; the LM frozen), trained with its optimiser; ``--loss theme`` puts the loss on the theme token
            only, ``--loss full`` on the whole target as the model trains; ``--scene-only`` removes every
            image of the sample but the scene's

    .venv/bin/python bench/graph4mm_image_path_probe.py isolated [--far] [--steps 300]
    .venv/bin/python bench/graph4mm_image_path_probe.py pipeline [--loss theme|full] [--scene-only] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from mmbench.api import GenerationTrainingData
from mmbench.backbones_lm import causal_lm
from mmbench.config import build_config, parse_overrides
from mmbench.data.synth_graph import generate_gen
from mmbench.models import lm_utils
from mmbench.models.graph4mm import GEN_PRESETS, Graph4MMConfig, Graph4MMGenerator
from mmbench.models.node_encodings import NodeEncodings
from mmbench.tasks import get_card

FAR_TEXT = ("\n[item] a little city lies near the ridge\n[item] this quiet mountain rests near the hill\n[link] a "
            "small path leads on from the shore\n[note] this shy report calls it peaceful\n[item] the lone mountain "
            "stands near the root\nSummary: the")


def load(scene_only: bool, p_theme_text: float) -> tuple[dict[str, list], dict[str, list[str]]]:
    """Samples and targets per split of synth-gen's graph with ``p_theme_text``; with ``scene_only`` every image
    but the scene's removed."""
    data = generate_gen({**get_card("synth-gen").dataset["params"], "p_theme_text": p_theme_text})
    g = data.graph

    def keep(s):
        if not scene_only:
            return s
        return dataclasses.replace(s, nodes=tuple(n if n.kind == "scene" else dataclasses.replace(n, image=None)
                                                  for n in s.nodes))
    samples = {k: [keep(data.assemble(v)) for v in g.splits[k].tolist()] for k in ("train", "valid", "test")}
    return samples, {k: [g.targets[int(s.id)] for s in samples[k]] for k in samples}


def graph4mm(samples: dict, targets: dict, over: dict) -> Graph4MMGenerator:
    view = GenerationTrainingData(task="synth-gen", train=tuple(samples["train"]),
                                  train_targets=tuple(targets["train"]), valid=tuple(samples["valid"]),
                                  test=tuple(samples["test"]), max_new_tokens=16)
    model = Graph4MMGenerator(build_config(Graph4MMConfig, "synth-gen", GEN_PRESETS, over, "graph4mm"))
    model.setup(view, seed=0)
    return model


def theme_ids(tokenizer, targets: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The first token id of " <name>" for each theme name (sorted), and per split each target's theme index."""
    names = sorted({t.split()[1] for t in targets["train"]})
    labels = {k: torch.tensor([names.index(t.split()[1]) for t in v]) for k, v in targets.items()}
    return torch.tensor([lm_utils.token_ids(tokenizer, " " + n)[0] for n in names]), labels


def isolated(args: argparse.Namespace) -> None:
    samples, targets = load(False, args.p_theme_text)
    enc = NodeEncodings(None, Graph4MMConfig.vision_encoder)             # Graph4MM's image encoder, cached
    enc.add(samples["train"] + samples["test"])

    def scene_features(split: str) -> torch.Tensor:                     # (n, D) frozen image features
        rows = [enc.image_row(next(n.image for n in s.nodes if n.kind == "scene")) for s in samples[split]]
        return enc.image_table[torch.tensor(rows)].float()
    lm, tok = causal_lm("smollm2")
    lm.eval().requires_grad_(False)
    first, label = theme_ids(tok, targets)
    x = {k: scene_features(k) for k in ("train", "test")}
    emb = lm.get_input_embeddings()
    pre = emb(torch.tensor(lm_utils.token_ids(tok, "Image:")))
    post = emb(torch.tensor(lm_utils.token_ids(tok, FAR_TEXT if args.far else " The colour theme is the")))
    torch.manual_seed(0)
    proj = torch.nn.Linear(x["train"].shape[1], emb.weight.shape[1])
    opt = torch.optim.AdamW(proj.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)

    def scores(f: torch.Tensor) -> torch.Tensor:                        # (n, 8) theme-name logits
        b = f.shape[0]
        e = torch.cat([pre.expand(b, -1, -1), proj(f).unsqueeze(1), post.expand(b, -1, -1)], 1)
        return lm(inputs_embeds=e).logits[:, -1, first]
    gen = torch.Generator().manual_seed(0)
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x["train"]), (8,), generator=gen)
        loss = F.cross_entropy(scores(x["train"][idx]), label["train"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in checkpoints(args.steps):
            with torch.no_grad():
                acc = float((scores(x["test"]).argmax(1) == label["test"]).float().mean())
            print(f"isolated far={args.far} step {step}: test theme accuracy {acc:.2f}", flush=True)


def pipeline(args: argparse.Namespace) -> None:
    # no alignment stage (synth-gen's preset has one): the probe counts the image path's training steps alone
    over = {"use_qformer": False, "trainable": "none", "align_epochs": 0, **parse_overrides(args.set)}
    samples, targets = load(args.scene_only, args.p_theme_text)
    model = graph4mm(samples, targets, over)
    first, label = theme_ids(model.tokenizer, targets)
    test_targets = [lm_utils.target_ids(model.tokenizer, t, 32) for t in targets["test"]]

    def theme_rows(b: dict) -> torch.Tensor:                            # (B,) position of the theme label
        return (b["labels"] != lm_utils.IGNORE_INDEX).float().argmax(1) + 1   # the target's 2nd token

    def accuracy() -> float:
        model.module.eval()
        right = 0
        with torch.no_grad():
            for i in range(0, len(samples["test"]), 25):
                # with targets (teacher-forced) and right padding, as in training
                b = model.batch(samples["test"][i:i + 25], test_targets[i:i + 25], training=True)
                logits = model.module.lm(inputs_embeds=b["inputs_embeds"], attention_mask=b["attention_mask"]).logits
                at = logits[torch.arange(logits.shape[0]), theme_rows(b) - 1][:, first]
                right += int((at.argmax(1) == label["test"][i:i + 25]).sum())
        model.module.train()
        return right / len(samples["test"])
    gen = torch.Generator().manual_seed(0)
    model.module.train()
    n = len(samples["train"])
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n, (8,), generator=gen).tolist()
        b = model.batch([samples["train"][i] for i in idx], [model.train_targets[i] for i in idx], training=True)
        if args.loss == "theme":
            keep = torch.zeros_like(b["labels"], dtype=torch.bool)
            keep[torch.arange(len(idx)), theme_rows(b)] = True
            b["labels"] = b["labels"].masked_fill(~keep, -100)
        lm_utils.optimizer_step(model.loss(b), model.optimizer, model.params, model.config.grad_clip)
        if step in checkpoints(args.steps):
            print(f"pipeline loss={args.loss} scene_only={args.scene_only} {over} step {step}: test theme accuracy "
                  f"{accuracy():.2f}", flush=True)


def checkpoints(steps: int) -> set[int]:
    return {s for s in (25, 75, 150, 300, 600) if s < steps} | {steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("isolated", "pipeline"))
    ap.add_argument("--steps", type=int, default=150, help="training steps of 8 samples")
    ap.add_argument("--lr", type=float, default=1e-3, help="isolated: the Linear's learning rate")
    ap.add_argument("--p-theme-text", type=float, default=0.0, help="share of scene texts naming the theme")
    ap.add_argument("--far", action="store_true", help="isolated: neighbour text between token and answer")
    ap.add_argument("--loss", choices=("theme", "full"), default="theme", help="pipeline: which target tokens")
    ap.add_argument("--scene-only", action="store_true", help="pipeline: drop every image but the scene's")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="pipeline: a Graph4MM config override (e.g. --set lr=3e-3); repeatable")
    args = ap.parse_args()
    torch.set_num_threads(1)
    isolated(args) if args.mode == "isolated" else pipeline(args)


if __name__ == "__main__":
    main()
