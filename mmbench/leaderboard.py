"""Aggregate result records into markdown: a page per task (one row per model config), a summary page per
family (models x tasks), bar charts, published numbers labelled as reported, and paired significance.

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

from mmbench.errors import ConfigError
from mmbench.io import atomic_write_text, canonical_json, sha256_hex
from mmbench.results import ResultRecord, ResultStore

LOWER_IS_BETTER = ("mr",)


@dataclass
class Row:
    label: str
    model: str
    config_hash: str
    records: list[ResultRecord] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)   # ``label_settings`` of its records

    def values(self, split: str, key: str) -> list[float]:
        return [r.metrics[split][key] for r in self.records if key in r.metrics.get(split, {})]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.records)


LABELS = {"mrr": "MRR", "mr": "MR", "bleu4": "BLEU-4", "bleu1": "BLEU-1", "rouge_l": "ROUGE-L", "cider": "CIDEr",
          "meteor": "METEOR", "sacrebleu": "sacreBLEU", "accuracy": "Acc", "macro_precision": "Macro-P",
          "macro_recall": "Macro-R", "macro_f1": "Macro-F1"}


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (``tabulate``, cells as given: no number parsing, so "0.5000 ± 0.1" stays)."""
    from tabulate import tabulate

    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)


def metric_label(key: str) -> str:
    name = key.rsplit(".", 1)[-1]
    return LABELS.get(name, name.replace("hits@", "Hits@"))


def fmt_interval(row: Row, key: str) -> str:
    """Mean over seeds of the per-seed 95% bootstrap bounds of ``key`` (test-set sampling uncertainty)."""
    bounds = [r.intervals.get(key) for r in row.records]
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


_CURRENT: dict[tuple[str, str, str], tuple[type, dict[str, Any]] | None] = {}


def _current_config(model: str, family: str, task: str) -> tuple[type, dict[str, Any]] | None:
    """(config class, the config ``mmbench eval --model M --task T`` resolves to today: defaults, card keys and
    task preset), or None when the model or task cannot be resolved here (e.g. an adapter file that is not on
    this machine)."""
    key = (model, family, task)
    if key not in _CURRENT:
        from mmbench.config import build_config, config_to_dict
        from mmbench.registry import get_model
        from mmbench.tasks import get_card

        try:
            cls = get_model(model, family)
            conf = build_config(cls.Config, task, cls.presets, {}, f"model {model}", card=get_card(task))
            _CURRENT[key] = (cls.Config, config_to_dict(conf))
        except Exception:  # noqa: BLE001 - any failure: fall back to the record's own overrides
            _CURRENT[key] = None
    return _CURRENT[key]


def label_settings(rec: ResultRecord) -> dict[str, Any]:
    """What sets a record apart from the model's current preset for its task: the config keys whose value
    differs from what ``mmbench eval`` resolves to today (a record made under an earlier preset shows the
    keys that preset changed); the record's ``--set`` overrides when the model cannot be resolved here."""
    cur = _current_config(rec.model_name, rec.task.get("family", ""), rec.task_name)
    if cur is None:
        return rec.overrides
    config_cls, now = cur
    later, mine = getattr(config_cls, "keys_added_later", None) or {}, rec.model.get("config") or {}
    return {k: mine.get(k, later.get(k, v)) for k, v in now.items()
            if canonical_json(mine.get(k, later.get(k, v))) != canonical_json(v)}   # JSON lists vs config tuples


def config_identity(rec: ResultRecord) -> str:
    """Hash of the record's config as its run key sees it (``runner.run_key_config``: a key added later, at
    the value that reproduces the behaviour before it, is left out), so records made before and after the
    key was added group into one row."""
    from mmbench.runner import run_key_config

    cur = _current_config(rec.model_name, rec.task.get("family", ""), rec.task_name)
    conf = rec.model.get("config") or {}
    return sha256_hex(canonical_json(run_key_config(cur[0], conf) if cur else conf))[:8]


def row_label(rec: ResultRecord, settings: dict[str, Any] | None = None) -> str:
    """"model [key=value, ...]" with the record's ``label_settings`` (computed unless given)."""
    over = label_settings(rec) if settings is None else settings
    if not over:
        return rec.model_name
    parts = ", ".join(f"{k}={canonical_json(v).strip(chr(34))}" for k, v in sorted(over.items()))
    return f"{rec.model_name} [{parts}]"


def group_rows(records: list[ResultRecord]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for rec in records:
        chash = config_identity(rec)
        key = (rec.model_name, chash)
        if key not in rows:
            settings = label_settings(rec)
            rows[key] = Row(label=row_label(rec, settings), model=key[0], config_hash=chash, settings=settings)
        rows[key].records.append(rec)
    labels = defaultdict(list)
    for row in rows.values():
        labels[row.label].append(row)
    for same in labels.values():  # same label, different full config: make the rows distinguishable
        if len(same) > 1:
            for row in same:
                row.label += f" (config {row.config_hash})"
    return list(rows.values())


def rank_key(row: Row, split: str, main: str) -> float:
    """Smaller is better: the row's mean ``main`` on ``split`` (negated where higher is better); inf if none."""
    vals = row.values(split, main)
    return (1 if is_lower_better(main) else -1) * statistics.fmean(vals) if vals else float("inf")


def sort_rows(rows: list[Row], main: str) -> list[Row]:
    return sorted(rows, key=lambda row: (rank_key(row, "test", main), row.label))


def is_baseline(row: Row) -> bool:
    return str(row.records[0].model.get("class", "")).startswith("baselines.")


def significance_markers(rows: list[Row], main: str) -> tuple[Row | None, dict[str, str]]:
    """The best baseline row and, per other row label, ▲ / ▼ / '' from a paired bootstrap over the test
    samples of their saved logs (p < 0.05). The reference is chosen on validation (mean valid main metric;
    ties and rows without validation fall back to the test order), so the test set picks nothing."""
    from mmbench.significance import paired_test

    baselines = [r for r in sort_rows(rows, main) if is_baseline(r) and r.values("test", main)]
    if not baselines:
        return None, {}
    # min keeps the first of equals: the test order breaks ties
    ref = min(baselines, key=lambda row: rank_key(row, "valid", main))

    ref_values = _row_values(ref)
    markers: dict[str, str] = {}
    if ref_values is None:
        return ref, markers
    for row in rows:
        if row is ref:
            continue
        v = _row_values(row)
        res = paired_test(v, ref_values) if v else None
        if res is not None:
            mark = res.marker()
            markers[row.label] = {"▲": "▼", "▼": "▲"}.get(mark, "") if is_lower_better(main) else mark
    return ref, markers


def render_table(records: list[ResultRecord]) -> str:
    first = records[0]
    headline = first.headline_metrics or [first.main_metric]
    main = first.main_metric
    rows = sort_rows(group_rows(records), main)
    ref, markers = significance_markers(rows, main)
    header = ["Model", "Seeds"] + [f"Test {metric_label(k)}" for k in headline] + \
        [f"95% CI {metric_label(main)}", f"Valid {metric_label(main)}", "#Params"]
    body = []
    for row in rows:
        params = sorted({r.model.get("num_parameters", 0) for r in row.records})
        label = row.label + (" (ref)" if row is ref and markers else "")
        cells = [label, str(len(row.records))]
        for k in headline:
            cell = fmt_stat(row.values("test", k), k)
            if k == main and markers.get(row.label):
                cell += f" {markers[row.label]}"
            cells.append(cell)
        cells += [fmt_interval(row, main), fmt_stat(row.values("valid", main), main),
                  " / ".join(f"{p:,}" for p in params)]
        body.append(cells)
    lines = [md_table(header, body)]
    if markers:
        lines += ["", f"▲ / ▼: significantly better / worse than the best baseline on validation, {ref.label} "
                      f"(ref), in a paired bootstrap over test samples (1,000 resamples, p < 0.05; per-sample values "
                      f"averaged over seeds)."]
    return "\n".join(lines)


def _row_values(row: Row) -> dict | None:
    from mmbench.significance import sample_values, seed_mean

    per = [sample_values(r) for r in row.records]
    per = [v for v in per if v]
    return seed_mean(per) if per else None


def hardware(row: Row) -> set[tuple[str, int | None]]:
    """(processor, CPU threads or None) of each of a row's records (``device.name``, ``device.threads`` where
    it ran on a CPU: the same seed trains differently with another thread count, float reduction order);
    records without a device name are left out."""
    out = set()
    for r in row.records:
        dev = r.device or {}
        if dev.get("name"):
            out.add((str(dev["name"]), dev.get("threads") if dev.get("device") == "cpu" else None))
    return out


def hardware_differs(a: set[tuple[str, int | None]], b: set[tuple[str, int | None]]) -> bool:
    """Different processors, or (where every record says) different CPU thread counts."""
    if not a or not b:
        return False
    if {n for n, _ in a} != {n for n, _ in b}:
        return True
    return all(t is not None for _, t in a | b) and a != b


def fmt_hardware(hw: set[tuple[str, int | None]]) -> str:
    return " + ".join(f"{n} at {t} thread{'s' * (t != 1)}" if t else n for n, t in sorted(hw, key=str))


def full_model_of(row: Row, rows: list[Row]) -> Row | None:
    """The row an ablation row is measured against: the same model's row of the preset the ablation was made
    under. That is today's plain row, unless the ablation holds keys its config class added later
    (``keys_added_later``) at their earlier values, i.e. it was made under the preset before those keys: then
    the row with exactly those settings where it exists (e.g. ``[align_epochs=0, image_structure=false]`` meets
    ``[align_epochs=0]``). None for a row without settings, or where the row it meets is ambiguous or absent."""
    mine = row.settings
    if not mine:
        return None
    cur = _current_config(row.model, row.records[0].task.get("family", ""), row.records[0].task_name)
    later = (getattr(cur[0], "keys_added_later", None) or {}) if cur else {}
    context = {k: v for k, v in mine.items() if k in later and canonical_json(v) == canonical_json(later[k])}
    if context == mine:   # the earlier preset's own row: against today's
        context = {}
    same = [r for r in rows if r.model == row.model]
    for settings in ((context, {}) if context else ({},)):   # without that preset's row: today's
        refs = [r for r in same if canonical_json(r.settings) == canonical_json(settings)]
        if refs:
            return refs[0] if len(refs) == 1 else None
    return None


def render_ablations(records: list[ResultRecord]) -> list[str]:
    """Each row with ``--set`` overrides against its full model (``full_model_of``): the mean
    difference of the main metric and a paired bootstrap over the test samples both have. The full model
    enters with the ablation's seeds when it has all of them (a one-seed ablation meets the full model's
    same seed, not its mean over seeds), else with all its seeds. When the two were computed on different
    processors or CPU thread counts the verdict says so: the same seed trains differently there (float
    rounding), so the difference is not the ablation's alone."""
    from mmbench.significance import paired_test

    main = records[0].main_metric
    rows = group_rows(records)
    body = []
    for row in sort_rows(rows, main):
        ref = full_model_of(row, rows)
        if ref is None:
            continue
        same_seeds = [r for r in ref.records if r.seed in set(row.seeds)]
        if sorted(r.seed for r in same_seeds) == row.seeds:
            ref = Row(ref.label, ref.model, ref.config_hash, same_seeds, ref.settings)
        a, b = _row_values(row), _row_values(ref)
        res = paired_test(a, b) if a and b else None
        diff = statistics.fmean(row.values("test", main)) - statistics.fmean(ref.values("test", main))
        if res is None:
            verdict = "no per-sample logs"
        else:
            mark = res.marker()
            verdict = {"▲": "significantly better", "▼": "significantly worse"}.get(mark, "not significant")
            if is_lower_better(main):
                verdict = {"significantly better": "significantly worse",
                           "significantly worse": "significantly better"}.get(verdict, verdict)
            verdict += f" (p = {min(res.p_not_better, res.p_not_worse):.3f}, {res.n} samples)"
        here, there = hardware(row), hardware(ref)
        if hardware_differs(here, there):
            verdict += f"; other hardware ({fmt_hardware(here)} vs {fmt_hardware(there)})"
        body.append([row.label, str(len(row.records)), ref.label, str(len(ref.records)),
                     fmt_stat(row.values("test", main), main), f"{diff:+.4f}", verdict])
    if not body:
        return []
    header = ["Ablation", "Seeds", "Full model", "Seeds", f"Test {metric_label(main)}", "Difference", "Paired test"]
    return ["Ablations against their full model, on the ablation's seeds where the full model has them (paired "
            "bootstrap over the test samples both logged, 1,000 resamples, p < 0.05; per-sample values averaged "
            "over seeds):", "", md_table(header, body), ""]


def render_reported(task: str, reported: list[dict[str, Any]]) -> list[str]:
    """Published numbers for this task, labelled as reported (not measured in mmbench)."""
    rows = [r for r in reported if r.get("task") == task]
    if not rows:
        return []
    body = [[r["model"], metric_label(str(r["metric"])), str(r["value"]), r["protocol"], r["source"]] for r in rows]
    return ["## Reported in papers (not measured in mmbench)", "",
            md_table(["Model", "Metric", "Value", "Protocol", "Source"], body), ""]


def render_task(task: str, records: list[ResultRecord], reported: list[dict[str, Any]] | None = None) -> str:
    by_fp: dict[str, list[ResultRecord]] = defaultdict(list)
    for rec in records:
        by_fp[rec.task["fingerprint"]].append(rec)
    ordered = sorted(by_fp.items(), key=lambda kv: max(r.created_at for r in kv[1]), reverse=True)
    first = ordered[0][1][0]
    card = first.task.get("card", {})
    out = [f"# {task}", "", str(card.get("description", "")).strip(), ""]
    proto = first.protocol
    family = first.family
    # the first record may be a model that trains nothing (labelprop, copy-context: no validation checks); the
    # protocol's selection metric is that of any record of the newest fingerprint that did validate
    picked = next((r.training["selection"]["metric"] for r in ordered[0][1]
                   if r.training["selection"].get("metric")), None) or "last epoch"
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
        t = recs[0].task
        out += [f"Task version {t['version']} · fingerprint `{fp[:12]}` · data `{t['data_hash'][:12]}` · "
                f"{len(recs)} records", "", render_table(recs), "", *render_ablations(recs)]
    out += render_reported(task, reported or [])
    return "\n".join(out).rstrip() + "\n"


def collect(store: ResultStore, include_unverified: bool = False) -> tuple[dict[str, list[ResultRecord]], int]:
    by_task: dict[str, list[ResultRecord]] = defaultdict(list)
    skipped = 0
    for _, rec in store.iter_records():
        if not rec.task.get("data_verified", True) and not include_unverified:
            skipped += 1
            continue
        by_task[rec.task_name].append(rec)
    return dict(by_task), skipped


FAMILIES = (("kgc", "Knowledge-graph completion"), ("generation", "Generation"),
            ("classification", "Classification"))


def newest(recs: list[ResultRecord]) -> list[ResultRecord]:
    """The records of the task's newest fingerprint (older fingerprints are on the task page)."""
    fp = max(recs, key=lambda r: r.created_at).task["fingerprint"]
    return [r for r in recs if r.task["fingerprint"] == fp]


def render_index(by_task: dict[str, list[ResultRecord]], charts: dict[str, str] | None = None) -> str:
    """Summary: one table per family, rows = models, columns = tasks (main test metric)."""
    n_records = sum(len(v) for v in by_task.values())
    lines = ["# mmbench leaderboard", "",
             f"Generated by `mmbench leaderboard` from {n_records} result records. Each cell: the task's main "
             "test metric, mean ± std over seeds (number of seeds); **bold**: best in its column; ▲ / ▼: "
             "significantly better / worse than the task's best baseline on validation (paired bootstrap over "
             "test samples, p < 0.05). Task pages (linked) have every metric, validation scores, bootstrap intervals, "
             "parameter counts and numbers reported by papers, labelled as reported.", ""]
    known = {f for f, _ in FAMILIES}
    others = sorted({r[0].family for r in by_task.values() if r} - known - {None})
    for family, title in [*FAMILIES, *((f, f.capitalize()) for f in others)]:
        tasks = sorted(t for t, recs in by_task.items() if recs[0].family == family)
        if not tasks:
            continue
        cols: dict[str, dict[str, str]] = {}
        labels: set[str] = set()
        for task in tasks:
            recs = newest(by_task[task])
            main = recs[0].main_metric
            rows = sort_rows(group_rows(recs), main)
            _, markers = significance_markers(rows, main)
            best = rows[0].label if rows and rows[0].values("test", main) else None
            cols[task] = {}
            for row in rows:
                vals = row.values("test", main)
                cell = f"{fmt_stat(vals, main)} ({len(vals)})" if vals else "–"
                cols[task][row.label] = (f"**{cell}**" if row.label == best else cell) + \
                    (f" {markers[row.label]}" if markers.get(row.label) else "")
                labels.add(row.label)
        header = ["Model"] + [f"[{t}]({t}.md) {metric_label(newest(by_task[t])[0].main_metric)}" for t in tasks]
        body = [[label] + [cols[t].get(label, "–") for t in tasks] for label in sorted(labels)]
        lines += [f"## {title}", "", md_table(header, body), ""]
        if charts:
            shown = [f"[{t}]({charts[t]})" for t in tasks if t in charts]
            if shown:
                lines += ["Charts (main test metric, mean with std error bars): " + ", ".join(shown), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_chart(task: str, records: list[ResultRecord], path: Path) -> bool:
    """A bar chart of the main test metric per model (mean over seeds, std error bars) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = newest(records)
    main = recs[0].main_metric
    rows = [r for r in sort_rows(group_rows(recs), main) if r.values("test", main)]
    if not rows:
        return False
    means = [statistics.fmean(r.values("test", main)) for r in rows]
    stds = [statistics.stdev(r.values("test", main)) if len(r.values("test", main)) > 1 else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.6), dpi=100)
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color="#4C72B0")
    ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric_label(main)}")
    ax.set_title(f"{task} (measured in mmbench, mean ± std over seeds)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return True


def load_reported(path: Path) -> list[dict[str, Any]]:
    """Published numbers (leaderboard/reported.yaml): each needs task, model, metric, value, protocol, source."""
    import yaml

    if not path.exists():
        return []
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    out = []
    for i, r in enumerate(raw):
        missing = [k for k in ("task", "model", "metric", "value", "protocol", "source") if not r.get(k)]
        if missing:
            raise ConfigError(f"{path}: entry {i + 1} lacks {', '.join(missing)}; only numbers with a source "
                              f"citation and their protocol are shown")
        out.append(r)
    return out


def write_leaderboard(store: ResultStore, out_dir: Path, include_unverified: bool = False,
                      charts: bool = True) -> list[Path]:
    """Task pages, charts and the summary page under ``out_dir`` (reported numbers from its reported.yaml)."""
    out_dir = Path(out_dir)
    by_task, skipped = collect(store, include_unverified)
    reported = load_reported(out_dir / "reported.yaml")
    written = []
    chart_links: dict[str, str] = {}
    for task in sorted({r["task"] for r in reported} - set(by_task)):
        path = out_dir / f"{task}.md"  # published numbers only: nothing measured here yet
        atomic_write_text(path, "\n".join([f"# {task}", "", "No result measured in mmbench yet (the data is "
                                           "not part of the offline set; see README 'Tasks').", "",
                                           *render_reported(task, reported)]).rstrip() + "\n")
        written.append(path)
    for task, recs in sorted(by_task.items()):
        path = out_dir / f"{task}.md"
        atomic_write_text(path, render_task(task, recs, reported))
        written.append(path)
        if charts and write_chart(task, recs, out_dir / "charts" / f"{task}.png"):
            chart_links[task] = f"charts/{task}.png"
            written.append(out_dir / "charts" / f"{task}.png")
    if by_task:
        path = out_dir / "README.md"
        atomic_write_text(path, render_index(by_task, chart_links))
        written.append(path)
    if skipped:
        print(f"note: {skipped} record(s) on unverified data left out (use --include-unverified)")
    return written
