"""Readers for triple files. Every parse error names the file and line."""

from __future__ import annotations

from pathlib import Path

import torch

from mmbench.errors import DataError


def read_id_triples(path: Path, order: str = "hrt", header: bool = False) -> torch.Tensor:
    """Integer-id triples, one per line, whitespace/tab separated.

    order: column order in the file ('hrt' for MyGO/MMRNS, 'htr' for OpenKE)
    header: the first line holds the triple count (OpenKE ``train2id.txt``)
    returns: (N, 3) long tensor with columns (head, relation, tail)
    """
    path = Path(path)
    rows: list[tuple[int, int, int]] = []
    declared = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            if header and declared is None:
                if not text.isdigit():
                    raise DataError(f"{path}:{lineno}: expected the triple count (OpenKE header), got {text!r}")
                declared = int(text)
                continue
            parts = text.split()
            if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts):
                raise DataError(f"{path}:{lineno}: expected 3 integer ids ({_names(order)}), got {text!r}")
            a, b, c = (int(p) for p in parts)
            if min(a, b, c) < 0:
                raise DataError(f"{path}:{lineno}: negative id in {text!r}")
            rows.append((a, b, c))
    t = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
    if declared is not None and declared != t.shape[0]:
        raise DataError(f"{path}:1: header declares {declared} triples but the file has {t.shape[0]}")
    if order == "htr":
        t = t[:, [0, 2, 1]]
    elif order != "hrt":
        raise ValueError(f"unknown column order {order!r}")
    return t


def _names(order: str) -> str:
    full = {"h": "head", "r": "relation", "t": "tail"}
    return ", ".join(full[c] for c in order)


def check_id_range(triples: torch.Tensor, num_entities: int, num_relations: int, path: Path,
                   header: bool = False) -> None:
    """Raise naming the first line whose ids fall outside [0, num_entities) / [0, num_relations)."""
    bad = (triples[:, 0] >= num_entities) | (triples[:, 2] >= num_entities) | (triples[:, 1] >= num_relations)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        h, r, t = triples[i].tolist()
        raise DataError(f"{path}:{_line_of_row(path, i, header)}: triple ({h}, {r}, {t}) is out of range: "
                        f"{num_entities} entities and {num_relations} relations are declared "
                        f"(entities.txt / relations.txt or the card's expected counts)")


def _line_of_row(path: Path, row: int, header: bool) -> int:
    """The 1-based line number of data row ``row`` (blank lines and the header skipped)."""
    seen = -1 - int(header)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return lineno
    return row + 1


def read_labeled_triples(path: Path) -> list[tuple[str, str, str]]:
    """Name triples ``head\\trelation\\ttail`` (PyKEEN's bundled datasets)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            parts = text.split("\t")
            if len(parts) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated fields (head, relation, tail), "
                                f"got {text!r}")
            out.append((parts[0], parts[1], parts[2]))
    return out


def count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def read_name_to_id(path: Path) -> dict[str, int]:
    """``entity2id.txt``: ``name id`` per line (space or tab separated, optional OpenKE count header)."""
    out: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)
            if lineno == 1 and len(parts) == 1 and text.isdigit():
                continue  # OpenKE count header
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{path}:{lineno}: expected 'name id', got {text!r}")
            if parts[0] in out:
                raise DataError(f"{path}:{lineno}: duplicate name {parts[0]!r}")
            out[parts[0]] = int(parts[1])
    return out
