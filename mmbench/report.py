"""Console summaries of result records."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_summary(record: dict[str, Any], path: Path, reused: bool) -> None:
    task, model = record["task"]["name"], record["model"]["name"]
    head = f"{model} on {task} (seed {record['seed']})" + (" [existing record]" if reused else "")
    print(head)
    if record["task"]["family"] == "kgc":
        rank = record["protocol"].get("rank_type", "realistic")
        cols = ["mrr", "mr", "hits@1", "hits@3", "hits@10"]
        print(f"  {'split/side':<12}" + "".join(f"{c:>9}" for c in cols))
        for split in ("valid", "test"):
            for side in ("both", "head", "tail"):
                m = record["metrics"].get(split, {})
                if f"{side}.{rank}.mrr" not in m:
                    continue
                cells = "".join(f"{m[f'{side}.{rank}.{c}']:>9.1f}" if c == "mr" else f"{m[f'{side}.{rank}.{c}']:>9.4f}"
                                for c in cols)
                print(f"  {split + '/' + side:<12}{cells}")
        sel = record["training"]["selection"]
        print(f"  selected epoch {sel.get('epoch')} by {sel.get('metric') or sel.get('reason')}; "
              f"{record['model']['num_parameters']:,} parameters; {record['timing']['wall_seconds']:.1f} s")
    print(f"  record: {path}")
