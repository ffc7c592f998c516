"""Leaderboard rendering from hand-built records, compared exactly."""

from __future__ import annotations

import dataclasses

import pytest

from mmbench.errors import ConfigError
from mmbench.leaderboard import fmt_stat, metric_label, write_leaderboard
from mmbench.results import ResultRecord, ResultStore

FP_NEW = "a" * 64
FP_OLD = "b" * 64
MRR, MR = "both.realistic.mrr", "both.realistic.mr"


def rec(key: str, model: str, config: dict, overrides: dict, seed: int, test_mrr: float, test_mr: float,
        valid_mrr: float, params: int, fp: str = FP_NEW, created: str = "2025-01-02T00:00:00Z",
        verified: bool = True, ci: tuple[float, float] | None = None) -> ResultRecord:
    version, data_hash = (2, "d" * 64) if fp == FP_NEW else (1, "e" * 64)
    return ResultRecord.from_dict({
        "intervals": {MRR: list(ci)} if ci else {},
        "schema": 1, "run_key": key, "created_at": created,
        "model": {"name": model, "config": config, "overrides": overrides, "num_parameters": params},
        "task": {"name": "toy", "version": version, "family": "kgc", "card_hash": "c" * 64,
                 "card": {"name": "toy", "description": "A toy task for the leaderboard test."},
                 "data_hash": data_hash, "fingerprint": fp, "data_verified": verified},
        "seed": seed, "main_metric": MRR, "headline_metrics": [MRR, MR],
        "protocol": {"rank_type": "realistic"},
        "metrics": {"valid": {MRR: valid_mrr}, "test": {MRR: test_mrr, MR: test_mr}},
        "training": {"selection": {"metric": f"valid/{MRR}", "epoch": 10}},
    })


def _page(path) -> str:
    """A generated page with its tables unpadded (``tabulate`` pads cells to the column width), so expected
    pages can be written by hand: each table line becomes ``| a | b |`` and each rule ``|---|---|``."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rule = all(c and set(c) <= set("-:") for c in cells)
            line = "|" + "|".join("---" for _ in cells) + "|" if rule else "| " + " | ".join(cells) + " |"
        out.append(line)
    return "\n".join(out) + "\n"


RECORDS = [
    # "alpha" with an override, 2 seeds: test MRR 0.2, 0.4 -> mean 0.3, std sqrt(((0.1)^2 + (0.1)^2) / 1)
    #   = 0.141421 -> "0.3000 ± 0.1414"; MR 5, 6 -> 5.5 ± 0.7071 -> "5.5 ± 0.7"; valid 0.1, 0.3 -> "0.2000 ± 0.1414"
    rec("r1", "alpha", {"dim": 4}, {"dim": 4}, 0, 0.2, 5.0, 0.1, 600),
    rec("r2", "alpha", {"dim": 4}, {"dim": 4}, 1, 0.4, 6.0, 0.3, 600),
    # "zeta" with defaults, 3 seeds: test MRR 0.5, 0.6, 0.7 -> mean 0.6, std sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    #   -> "0.6000 ± 0.1000"; MR 2, 3, 4 -> "3.0 ± 1.0"; valid 0.4, 0.5, 0.6 -> "0.5000 ± 0.1000"; 1,200 params
    #   bootstrap intervals [0.45, 0.55], [0.55, 0.65], [0.65, 0.75] -> bounds averaged "[0.5500, 0.6500]"
    rec("r3", "zeta", {"dim": 8}, {}, 0, 0.5, 2.0, 0.4, 1200, ci=(0.45, 0.55)),
    rec("r4", "zeta", {"dim": 8}, {}, 1, 0.6, 3.0, 0.5, 1200, ci=(0.55, 0.65)),
    rec("r5", "zeta", {"dim": 8}, {}, 2, 0.7, 4.0, 0.6, 1200, ci=(0.65, 0.75)),
    # an older fingerprint of the same task (the card or data changed): its own table, one seed, no ±
    rec("r6", "zeta", {"dim": 8}, {}, 0, 0.9, 1.5, 0.8, 1200, fp=FP_OLD, created="2024-06-01T00:00:00Z",
        ci=(0.85, 0.95)),
    # unverified data: left out by default (it would top the table)
    rec("r7", "gamma", {"dim": 2}, {}, 0, 0.99, 1.0, 0.99, 50, verified=False),
]

PREAMBLE = """\
# toy

A toy task for the leaderboard test.

Filtered ranking over all entities (filter: train + valid + test), head and tail queries, realistic ranks \
for ties. The checkpoint is chosen on validation (valid/both.realistic.mrr); test is scored once. \
Test columns: mean ± std over seeds; 95% CI: the per-seed bootstrap interval of the main metric over \
test samples, averaged over seeds.

**2 task fingerprints exist** (the card or the data changed); records with different fingerprints are \
not averaged together. Newest first.

"""

OLD_SECTION = """\
Task version 1 · fingerprint `bbbbbbbbbbbb` · data `eeeeeeeeeeee` · 1 records

| Model | Seeds | Test MRR | Test MR | 95% CI MRR | Valid MRR | #Params |
|---|---|---|---|---|---|---|
| zeta | 1 | 0.9000 | 1.5 | [0.8500, 0.9500] | 0.8000 | 1,200 |
"""

EXPECTED_TOY = PREAMBLE + """\
Task version 2 · fingerprint `aaaaaaaaaaaa` · data `dddddddddddd` · 5 records

| Model | Seeds | Test MRR | Test MR | 95% CI MRR | Valid MRR | #Params |
|---|---|---|---|---|---|---|
| zeta | 3 | 0.6000 ± 0.1000 | 3.0 ± 1.0 | [0.5500, 0.6500] | 0.5000 ± 0.1000 | 1,200 |
| alpha [dim=4] | 2 | 0.3000 ± 0.1414 | 5.5 ± 0.7 | – | 0.2000 ± 0.1414 | 600 |

""" + OLD_SECTION

EXPECTED_TOY_WITH_UNVERIFIED = PREAMBLE + """\
Task version 2 · fingerprint `aaaaaaaaaaaa` · data `dddddddddddd` · 6 records

| Model | Seeds | Test MRR | Test MR | 95% CI MRR | Valid MRR | #Params |
|---|---|---|---|---|---|---|
| gamma | 1 | 0.9900 | 1.0 | – | 0.9900 | 50 |
| zeta | 3 | 0.6000 ± 0.1000 | 3.0 ± 1.0 | [0.5500, 0.6500] | 0.5000 ± 0.1000 | 1,200 |
| alpha [dim=4] | 2 | 0.3000 ± 0.1414 | 5.5 ± 0.7 | – | 0.2000 ± 0.1414 | 600 |

""" + OLD_SECTION

EXPECTED_INDEX = """\
# mmbench leaderboard

Generated by `mmbench leaderboard` from 6 result records. Each cell: the task's main test metric, mean ± std \
over seeds (number of seeds); **bold**: best in its column; ▲ / ▼: significantly better / worse than the \
task's best baseline (paired bootstrap over test samples, p < 0.05). Task pages (linked) have every metric, \
validation scores, bootstrap intervals, parameter counts and numbers reported by papers, labelled as reported.

## Knowledge-graph completion

| Model | [toy](toy.md) MRR |
|---|---|
| alpha [dim=4] | 0.3000 ± 0.1414 (2) |
| zeta | **0.6000 ± 0.1000 (3)** |

Charts (main test metric, mean with std error bars): [toy](charts/toy.png)
"""


@pytest.fixture
def store(tmp_path):
    s = ResultStore(tmp_path / "results")
    for r in RECORDS:
        s.write(dataclasses.replace(r))
    return s


def test_task_page_exact(store, tmp_path, capsys):
    out = tmp_path / "lb"
    written = write_leaderboard(store, out)
    assert written == [out / "toy.md", out / "charts" / "toy.png", out / "README.md"]
    assert (out / "charts" / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _page(out / "toy.md") == EXPECTED_TOY
    assert _page(out / "README.md") == EXPECTED_INDEX
    lines = (out / "toy.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Model"))
    table = lines[start:next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))]
    assert table[1].startswith("|---") and len(table) > 2
    assert len({len(line) for line in table}) == 1  # tabulate pads every cell to its column's width
    assert capsys.readouterr().out == "note: 1 record(s) on unverified data left out (use --include-unverified)\n"


def test_include_unverified(store, tmp_path, capsys):
    out = tmp_path / "lb"
    write_leaderboard(store, out, include_unverified=True)
    assert _page(out / "toy.md") == EXPECTED_TOY_WITH_UNVERIFIED
    assert "| gamma | **0.9900 (1)** |" in _page(out / "README.md")
    assert "unverified" not in capsys.readouterr().out


def test_same_label_different_config_rows_are_told_apart(tmp_path):
    s = ResultStore(tmp_path / "results")
    s.write(rec("x1", "zeta", {"dim": 8, "lr": 0.1}, {}, 0, 0.5, 2.0, 0.4, 10))
    s.write(rec("x2", "zeta", {"dim": 8, "lr": 0.2}, {}, 0, 0.4, 2.0, 0.4, 10))
    write_leaderboard(s, tmp_path / "lb")
    rows = [line for line in _page(tmp_path / "lb" / "toy.md").splitlines() if line.startswith("| zeta")]
    assert len(rows) == 2
    assert rows[0].startswith("| zeta (config ") and "| 0.5000 |" in rows[0]
    assert rows[1].startswith("| zeta (config ") and "| 0.4000 |" in rows[1]
    assert rows[0].split("|")[1] != rows[1].split("|")[1]


def test_page_names_the_selection_metric_when_some_model_trains_nothing(tmp_path):
    """A record without validation checks (labelprop, copy-context) listed first does not hide the metric."""
    s = ResultStore(tmp_path / "results")
    untrained = rec("u1", "aaa-floor", {}, {}, 0, 0.1, 9.0, 0.1, 0)
    untrained.training = {"selection": {"metric": None, "epoch": 0, "reason": "no validation checks"}}
    s.write(untrained)
    s.write(rec("x1", "zeta", {"dim": 8}, {}, 0, 0.5, 2.0, 0.4, 10))
    write_leaderboard(s, tmp_path / "lb")
    assert "chosen on validation (valid/both.realistic.mrr)" in _page(tmp_path / "lb" / "toy.md")
    s2 = ResultStore(tmp_path / "only-floor")
    s2.write(dataclasses.replace(untrained))
    write_leaderboard(s2, tmp_path / "lb2")
    assert "chosen on validation (last epoch)" in _page(tmp_path / "lb2" / "toy.md")


def test_empty_store(tmp_path):
    assert write_leaderboard(ResultStore(tmp_path / "none"), tmp_path / "lb") == []
    assert not (tmp_path / "lb").exists()


@pytest.mark.parametrize("values, key, text", [
    ([], MRR, "–"),
    ([0.25], MRR, "0.2500"),
    ([0.25, 0.35], MRR, "0.3000 ± 0.0707"),
    ([10.0, 13.0], MR, "11.5 ± 2.1"),
    ([0.1, 0.1, 0.1], "both.realistic.hits@10", "0.1000 ± 0.0000"),
])
def test_fmt_stat(values, key, text):
    assert fmt_stat(values, key) == text


def test_metric_label():
    assert metric_label("both.realistic.mrr") == "MRR"
    assert metric_label("tail.optimistic.mr") == "MR"
    assert metric_label("both.realistic.hits@10") == "Hits@10"


def _with_samples(store: ResultStore, key: str, model: str, cls: str, seed: int, rr: list[float]) -> None:
    """A classification record whose sample log marks node i correct with probability-free pattern ``rr``."""
    r = rec(key, model, {"dim": 1}, {}, seed, sum(rr) / len(rr), 1.0, 0.5, 10)
    r.model["class"] = cls
    r.task["family"] = "classification"
    samples = [{"node": i, "label": 1, "pred": 1 if ok else 0, "label_name": "b", "pred_name": "b" if ok else "a"}
               for i, ok in enumerate(rr)]
    store.write(r, samples)


def test_significance_markers_against_the_best_baseline(tmp_path):
    s = ResultStore(tmp_path / "results")
    good = [1.0] * 180 + [0.0] * 20      # 0.90 accuracy
    base = [1.0] * 120 + [0.0] * 80      # 0.60
    same = [1.0] * 118 + [0.0] * 82      # 0.59: not distinguishable from the baseline
    weak = [1.0] * 40 + [0.0] * 160      # 0.20
    _with_samples(s, "b1", "base", "baselines.x:Base", 0, base)
    _with_samples(s, "b2", "weak-base", "baselines.x:Weak", 0, weak)
    _with_samples(s, "m1", "good", "mmbench.models.x:Good", 0, good)
    _with_samples(s, "m2", "same", "mmbench.models.x:Same", 0, same)
    write_leaderboard(s, tmp_path / "lb", charts=False)
    page = _page(tmp_path / "lb" / "toy.md")
    rows = {line.split(" | ")[0][2:]: line for line in page.splitlines() if line.startswith("| ")}
    assert "0.9000 ▲" in rows["good"]
    assert "▲" not in rows["same"] and "▼" not in rows["same"]
    assert "0.2000 ▼" in rows["weak-base"]
    assert "base (ref)" in rows
    assert "best baseline, base (ref)" in page
    summary = _page(tmp_path / "lb" / "README.md")
    assert "| good | **0.9000 (1)** ▲ |" in summary


def test_reported_numbers_are_labelled_and_need_a_source(store, tmp_path):
    out = tmp_path / "lb"
    out.mkdir()
    (out / "reported.yaml").write_text(
        "- {task: toy, model: paper-model, metric: mrr, value: 0.42, protocol: best of test evaluations, "
        "source: 'Doe et al. 2025, Table 2'}\n")
    write_leaderboard(store, out, charts=False)
    page = _page(out / "toy.md")
    assert "## Reported in papers (not measured in mmbench)" in page
    assert "| paper-model | MRR | 0.42 | best of test evaluations | Doe et al. 2025, Table 2 |" in page
    (out / "reported.yaml").write_text("- {task: toy, model: m, metric: mrr, value: 0.5, protocol: x}\n")
    with pytest.raises(ConfigError, match="entry 1 lacks source"):
        write_leaderboard(store, out, charts=False)


def test_reported_only_task_gets_a_page(store, tmp_path):
    out = tmp_path / "lb"
    out.mkdir()
    (out / "reported.yaml").write_text(
        "- {task: db15k, model: mygo, metric: mrr, value: 0.381, protocol: paper, source: 'an issue thread'}\n")
    written = write_leaderboard(store, out, charts=False)
    assert out / "db15k.md" in written
    page = _page(out / "db15k.md")
    assert page.startswith("# db15k\n\nNo result measured in mmbench yet")
    assert "| mygo | MRR | 0.381 | paper | an issue thread |" in page


def test_ablation_rows_are_compared_with_their_full_model(tmp_path):
    s = ResultStore(tmp_path / "results")
    s.write(rec("f0", "zeta", {"dim": 8, "use_x": True}, {}, 0, 0.5, 2.0, 0.4, 10))
    s.write(rec("f1", "zeta", {"dim": 8, "use_x": True}, {}, 1, 0.7, 2.0, 0.4, 10))
    s.write(rec("a0", "zeta", {"dim": 8, "use_x": False}, {"use_x": False}, 0, 0.35, 2.0, 0.3, 10))
    s.write(rec("o0", "omega", {"dim": 8}, {"dim": 8}, 0, 0.1, 2.0, 0.1, 10))   # no full omega row: not listed
    write_leaderboard(s, tmp_path / "lb")
    page = _page(tmp_path / "lb" / "toy.md")
    assert "Ablations against their full model" in page
    row = next(line for line in page.splitlines() if line.startswith("| zeta [use_x=false] | 1 | zeta | 2 |"))
    assert "| 0.3500 | -0.2500 | no per-sample logs |" in row
    assert not any(line.startswith("| omega [dim=8] | 1 | ") for line in page.split("Ablations")[1].splitlines())
