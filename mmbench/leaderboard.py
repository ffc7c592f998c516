"""Aggregate result records into markdown tables: one table per task, one row per model config.

Rows average over seeds (mean ± unbiased std, with the number of seeds). Records of one task with
different fingerprints (card or data changed) are never averaged together: each fingerprint gets its
own table, the newest first. Records on unverified data are left out unless asked for.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbench.io import atomic_write_text, canonical_json, sha256_hex
from mmbench.results import ResultStore

LOWER_IS_BETTER = ("mr",)


@dataclass
class Row:
    label: str
    model: str
    config_hash: str
    records: list[dict[str, Any]] = field(default_factory=list)

    def values(self, split: str, key: str) -> list[float]:
        return [r["metrics"][split][key] for r in self.records if key in r["metrics"].get(split, {})]

    @property
    def seeds(self) -> list[int]:
        return sorted(r["seed"] for r in self.records)


LABELS = {"mrr": "MRR", "mr": "MR", "bleu4": "BLEU-4", "bleu1": "BLEU-1", "rouge_l": "ROUGE-L", "cider": "CIDEr",
          "meteor": "METEOR", "sacrebleu": "sacreBLEU", "accuracy": "Acc", "macro_precision": "Macro-P",
          "macro_recall": "Macro-R", "macro_f1": "Macro-F1"}


def metric_label(key: str) -> str:
    name = key.rsplit(".", 1)[-1]
    return LABELS.get(name, name.replace("hits@", "Hits@"))


def fmt_interval(row: Row, key: str) -> str:
    """Mean over seeds of the per-seed 95% bootstrap bounds of ``key`` (test-set sampling uncertainty)."""
    bounds = [r.get("intervals", {}).get(key) for r in row.records]
    bounds = [b for b in bounds if b]
    if not bounds:
        return "–"
    digits = 1 if is_lower_better(key) else 4
    lo = statistics.fmean(b[0] for b in bounds)
    hi = statistics.fmean(b[1] for b in bounds)
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def is_lower_better(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in LOWER_IS_BETTER


def fmt_stat(values: list[float], key: str) -> str:
    if not values:
        return "–"
    digits = 1 if is_lower_better(key) else 4
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def row_label(rec: dict[str, Any]) -> str:
    over = rec["model"].get("overrides") or {}
    if not over:
        return rec["model"]["name"]
    parts = ", ".join(f"{k}={canonical_json(v).strip(chr(34))}" for k, v in sorted(over.items()))
    return f"{rec['model']['name']} [{parts}]"


def group_rows(records: list[dict[str, Any]]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for rec in records:
        chash = sha256_hex(canonical_json(rec["model"]["config"]))[:8]
        key = (rec["model"]["name"], chash)
        rows.setdefault(key, Row(label=row_label(rec), model=key[0], config_hash=chash)).records.append(rec)
    labels = defaultdict(list)
    for row in rows.values():
        labels[row.label].append(row)
    for same in labels.values():  # same label, different full config: make the rows distinguishable
        if len(same) > 1:
            for row in same:
                row.label += f" (config {row.config_hash})"
    return list(rows.values())


def sort_rows(rows: list[Row], main: str) -> list[Row]:
    sign = 1 if is_lower_better(main) else -1

    def key(row: Row) -> tuple[float, str]:
        vals = row.values("test", main)
        return (sign * statistics.fmean(vals) if vals else float("inf"), row.label)

    return sorted(rows, key=key)


def render_table(records: list[dict[str, Any]]) -> str:
    first = records[0]
    headline = first.get("headline_metrics") or [first["main_metric"]]
    main = first["main_metric"]
    header = ["Model", "Seeds"] + [f"Test {metric_label(k)}" for k in headline] + \
        [f"95% CI {metric_label(main)}", f"Valid {metric_label(main)}", "#Params"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in sort_rows(group_rows(records), main):
        params = sorted({r["model"].get("num_parameters", 0) for r in row.records})
        cells = [row.label, str(len(row.records))] + [fmt_stat(row.values("test", k), k) for k in headline] + \
            [fmt_interval(row, main), fmt_stat(row.values("valid", main), main),
             " / ".join(f"{p:,}" for p in params)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_task(task: str, records: list[dict[str, Any]]) -> str:
    by_fp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_fp[rec["task"]["fingerprint"]].append(rec)
    ordered = sorted(by_fp.items(), key=lambda kv: max(r["created_at"] for r in kv[1]), reverse=True)
    first = ordered[0][1][0]
    card = first["task"].get("card", {})
    out = [f"# {task}", "", str(card.get("description", "")).strip(), ""]
    proto = first.get("protocol", {})
    family = first["task"].get("family")
    picked = first["training"]["selection"].get("metric") or "last epoch"
    selection = f"The checkpoint is chosen on validation ({picked}); test is scored once."
    ci = ("Test columns: mean ± std over seeds; 95% CI: the per-seed bootstrap interval of the main metric over "
          "test samples, averaged over seeds.")
    if family == "kgc":
        out += [f"Filtered ranking over all entities (filter: train + valid + test), head and tail queries, "
                f"{proto.get('rank_type', 'realistic')} ranks for ties. {selection} {ci}", ""]
    elif family == "generation":
        out += [f"Free decoding ({proto.get('decoding', 'greedy')}, at most {proto.get('max_new_tokens')} new tokens), "
                f"metric protocol `{proto.get('metric_protocol', 'standard')}` (pycocoevalcap with the PTB tokenizer). "
                f"{selection} {ci}", ""]
    elif family == "classification":
        zs = " Zero-shot: predictions among the unseen classes only." if proto.get("zero_shot") else ""
        out += [f"Accuracy and macro-averaged precision/recall/F1 over the candidate classes.{zs} {selection} {ci}",
                ""]
    if len(ordered) > 1:
        out += [f"**{len(ordered)} task fingerprints exist** (the card or the data changed); records with "
                f"different fingerprints are not averaged together. Newest first.", ""]
    for fp, recs in ordered:
        t = recs[0]["task"]
        out += [f"Task version {t['version']} · fingerprint `{fp[:12]}` · data `{t['data_hash'][:12]}` · "
                f"{len(recs)} records", "", render_table(recs), ""]
    return "\n".join(out).rstrip() + "\n"


def collect(store: ResultStore, include_unverified: bool = False) -> tuple[dict[str, list[dict]], int]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    skipped = 0
    for _, rec in store.iter_records():
        if not rec["task"].get("data_verified", True) and not include_unverified:
            skipped += 1
            continue
        by_task[rec["task"]["name"]].append(rec)
    return dict(by_task), skipped


def render_index(by_task: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["# mmbench leaderboard", "", "Generated by `mmbench leaderboard` from the result records. "
             "One page per task; the best model by the task's main test metric is named here.", "",
             "| Task | Family | Best model | Test main metric | Models | Records |", "|---|---|---|---|---|---|"]
    for task in sorted(by_task):
        recs = by_task[task]
        newest_fp = max(recs, key=lambda r: r["created_at"])["task"]["fingerprint"]
        recs = [r for r in recs if r["task"]["fingerprint"] == newest_fp]
        main = recs[0]["main_metric"]
        rows = sort_rows(group_rows(recs), main)
        best = rows[0]
        lines.append(f"| [{task}]({task}.md) | {recs[0]['task'].get('family', '')} | {best.label} | "
                     f"{metric_label(main)} {fmt_stat(best.values('test', main), main)} | {len(rows)} | "
                     f"{len(recs)} |")
    return "\n".join(lines) + "\n"


def write_leaderboard(store: ResultStore, out_dir: Path, include_unverified: bool = False) -> list[Path]:
    by_task, skipped = collect(store, include_unverified)
    written = []
    for task, recs in sorted(by_task.items()):
        path = Path(out_dir) / f"{task}.md"
        atomic_write_text(path, render_task(task, recs))
        written.append(path)
    if by_task:
        path = Path(out_dir) / "README.md"
        atomic_write_text(path, render_index(by_task))
        written.append(path)
    if skipped:
        print(f"note: {skipped} record(s) on unverified data left out (use --include-unverified)")
    return written
