"""Console summaries of result records: one small metrics table for every family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmbench.results import ResultRecord


def _width(name: str) -> int:
    return max(10, len(name) + 2)


def _cell(name: str, value: Any) -> str:
    w = _width(name)
    if not isinstance(value, (int, float)):
        return f"{'-':>{w}}"
    return f"{value:>{w}.1f}" if name.endswith("mr") else f"{value:>{w}.4f}"


def _kgc_rows(record: ResultRecord) -> list[tuple[str, list[str], dict[str, Any]]]:
    rank = record.protocol.get("rank_type", "realistic")
    cols = ["mrr", "mr", "hits@1", "hits@3", "hits@10"]
    rows = []
    for split in ("valid", "test"):
        m = record.metrics.get(split, {})
        for side in ("both", "head", "tail"):
            if f"{side}.{rank}.mrr" in m:
                rows.append((f"{split}/{side}", cols, {c: m[f"{side}.{rank}.{c}"] for c in cols}))
    return rows


def _graph_rows(record: ResultRecord) -> list[tuple[str, list[str], dict[str, Any]]]:
    cols = [k for k in record.headline_metrics if "." not in k] or sorted(record.metrics["test"])[:5]
    return [(split, cols, record.metrics.get(split, {})) for split in ("valid", "test")
            if record.metrics.get(split)]


def print_summary(record: ResultRecord, path: Path, reused: bool) -> None:
    print(f"{record.model_name} on {record.task_name} (seed {record.seed})" + (" [existing record]" if reused else ""))
    rows = _kgc_rows(record) if record.family == "kgc" else _graph_rows(record)
    if rows:
        cols = rows[0][1]
        print(f"  {'split':<12}" + "".join(f"{c:>{_width(c)}}" for c in cols))
        for label, _, values in rows:
            print(f"  {label:<12}" + "".join(_cell(c, values.get(c)) for c in cols))
    main = record.main_metric
    ci = record.intervals.get(main)
    if ci:
        print(f"  test {main}: 95% bootstrap interval [{ci[0]:.4f}, {ci[1]:.4f}]")
    sel = record.training["selection"]
    dev = record.device or {}
    where = f"; {dev.get('device')} ({dev.get('dtype')})" if dev else ""
    print(f"  selected epoch {sel.get('epoch')} by {sel.get('metric') or sel.get('reason')}; "
          f"{record.model['num_parameters']:,} parameters; {record.timing['wall_seconds']:.1f} s{where}")
    print(f"  record: {path}")
