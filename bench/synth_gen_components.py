"""Which part of the synth-gen target each model gets right, from the records' per-sample logs.

synth-gen targets read "the <theme> <object> is <quality>": the object is in the target node's own text, the
quality in a 2-hop neighbour's text, the theme in a 1-hop neighbour's image colour (for half of the samples also
in its text). A prediction gets a component right when its word in that slot equals the reference's. Printed per
model: the share of test samples with each component right (mean over seeds), the share with all three, and the
theme split by where it is (the scene's text names it, or only the scene's image colour does; chance 1/8).

    .venv/bin/python bench/synth_gen_components.py [--results results] [--task synth-gen | path/to/card.yaml]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from mmbench.io import read_jsonl_gz
from mmbench.leaderboard import group_rows
from mmbench.results import ResultStore


def slots(text: str) -> tuple[str, str, str] | None:
    """'the T O is Q' -> (T, O, Q); None when the text does not have that shape."""
    words = text.strip().lower().rstrip(".").split()
    if len(words) != 5 or words[0] != "the" or words[3] != "is":
        return None
    return words[1], words[2], words[4]


def image_only_theme_ids(card: str) -> set[str]:
    """Sample ids (target node ids) of the task whose theme is in the scene's image only, not in its text."""
    from mmbench.data import load_task_data
    from mmbench.tasks import get_card

    g = load_task_data(get_card(card)).graph
    scene_of = {}
    for a, b in g.edge_index.t().tolist():
        if g.targets[a] and g.kinds[b] == "scene":
            scene_of[a] = b
    return {str(v) for v, sc in scene_of.items() if g.targets[v].split()[1] not in g.texts[sc].split()}


def component_scores(rows: list[dict], image_only: set[str] | None = None) -> dict[str, float]:
    """Per-sample rows {prediction, reference[, id]} -> share right of theme, object, quality, all, well-formed;
    with ``image_only`` (sample ids) also the theme's share right among those ids (theme_image) and the others
    (theme_text)."""
    right = defaultdict(int)
    split = defaultdict(int)
    for r in rows:
        ref, pred = slots(r["reference"]), slots(r["prediction"])
        if ref is None:
            raise ValueError(f"reference {r['reference']!r} is not a synth-gen target")
        where = "theme_image" if image_only is not None and r.get("id") in image_only else "theme_text"
        split[where] += 1
        if pred is None:
            continue
        right["formed"] += 1
        hits = [p == q for p, q in zip(pred, ref, strict=True)]
        right[where] += hits[0]
        for name, hit in zip(("theme", "object", "quality"), hits, strict=True):
            right[name] += hit
        right["all"] += all(hits)
    n = max(len(rows), 1)
    out = {k: right[k] / n for k in ("theme", "object", "quality", "all", "formed")}
    if image_only is not None:
        out.update({k: right[k] / max(split[k], 1) for k in ("theme_text", "theme_image")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--task", default="synth-gen", help="task name, or a card path (e.g. tasks/probes/...)")
    args = ap.parse_args()
    image_only = image_only_theme_ids(args.task)
    task = Path(args.task).stem if args.task.endswith((".yaml", ".yml")) else args.task
    by_model: dict[str, list[dict[str, float]]] = defaultdict(list)
    found = [rec for _, rec in ResultStore(Path(args.results)).iter_records()
             if rec.task_name == task and rec.samples_file]
    for row in group_rows(found):   # one row per config, labelled as on the leaderboard
        for rec in row.records:
            by_model[row.label].append(component_scores(read_jsonl_gz(rec.path.parent / rec.samples_file),
                                                        image_only))
    w = max(map(len, by_model), default=5)
    print(f"{'model':<{w}} seeds  theme  object quality   all  well-formed  theme|text  theme|image only")
    for label, runs in sorted(by_model.items()):
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        print(f"{label:<{w}} {len(runs):>5}  {mean['theme']:5.0%}  {mean['object']:5.0%}  {mean['quality']:5.0%}  "
              f"{mean['all']:5.0%}  {mean['formed']:6.0%}  {mean['theme_text']:10.0%}  {mean['theme_image']:10.0%}")


if __name__ == "__main__":
    main()
