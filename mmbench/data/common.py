"""Data helpers every loader shares: where a task's data lives, the message when it is missing, the check
against the card's published counts, undirected edge lists and the card's class split (zero-shot splits)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from mmbench import paths
from mmbench.data.graph import MultimodalGraph
from mmbench.errors import ConfigError, DataError, closest
from mmbench.tasks import TaskCard


def dataset_dir(card: TaskCard) -> Path:
    return paths.data_root() / card.dataset.get("dir", card.name)


def missing_data_message(card: TaskCard, what: str) -> str:
    get = str(card.dataset.get("get", "")).strip()
    return (f"task {card.name}: {what}.\n"
            f"  Get the data: {get or 'see ' + str(card.path)}\n"
            f"  Then run: mmbench data prepare {card.name} --from DIR\n"
            f"  (data lives under $MMBENCH_DATA, now {paths.data_root()})")


def verify_expected(card: TaskCard, actual: dict[str, Any], verify: bool, where: Path | None,
                    notes: list[str]) -> bool:
    """Compare ``actual`` with the card's ``dataset.expected`` (only the keys it lists).

    Returns whether the data matched; on a mismatch raises ``DataError`` when ``verify``, otherwise
    appends the explanation to ``notes``.
    """
    expected = card.dataset.get("expected") or {}
    wrong = [f"{k}: found {actual[k]:,}, published {v:,}" if isinstance(actual.get(k), int)
             else f"{k}: not measured, published {v!r}" for k, v in expected.items() if actual.get(k) != v]
    if not wrong:
        return True
    source = f"the data under {where}" if where else "the generated data"
    msg = (f"task {card.name}: {source} does not match the published statistics "
           f"({'; '.join(wrong)}). Is this the release named in {card.path}?")
    if verify:
        raise DataError(msg + " Re-run `mmbench data prepare` with the original files, or pass "
                              "--unverified-data to run anyway (the result is then marked unverified).")
    notes.append(msg)
    return False


def undirected(edge_index: torch.Tensor, num_nodes: int, notes: list[str], where: str) -> torch.Tensor:
    """Both directions of every edge, each once, sorted; self-loops dropped (counted in ``notes``)."""
    loops = edge_index[0] == edge_index[1]
    if int(loops.sum()):
        notes.append(f"{where}: dropped {int(loops.sum()):,} self-loop(s)")
    ei = edge_index[:, ~loops]
    both = torch.cat([ei, ei.flip(0)], dim=1)
    if not both.numel():
        return both.reshape(2, 0)
    key = torch.unique(both[0] * num_nodes + both[1])
    merged = 2 * ei.shape[1] - key.numel()
    if merged:
        notes.append(f"{where}: merged {merged:,} duplicate directed edge(s) (both directions are stored once)")
    return torch.stack([key // num_nodes, key % num_nodes])


def _class_ids(refs: Any, class_names: tuple[str, ...], card: TaskCard, key: str) -> tuple[int, ...]:
    if not isinstance(refs, list) or not refs:
        raise ConfigError(f"{card.path}: protocol.zero_shot.{key} must be a non-empty list of class ids "
                          f"or class names")
    out: list[int] = []
    for r in refs:
        if isinstance(r, bool):
            raise ConfigError(f"{card.path}: protocol.zero_shot.{key}: {r!r} is not a class id or name")
        if isinstance(r, int):
            if not 0 <= r < len(class_names):
                raise ConfigError(f"{card.path}: protocol.zero_shot.{key}: class id {r} is outside "
                                  f"0..{len(class_names) - 1}")
            out.append(r)
        elif isinstance(r, str):
            if r not in class_names:
                raise ConfigError(f"{card.path}: protocol.zero_shot.{key}: unknown class {r!r}."
                                  f"{closest(r, class_names)}")
            out.append(class_names.index(r))
        else:
            raise ConfigError(f"{card.path}: protocol.zero_shot.{key}: {r!r} is not a class id or name")
    if len(set(out)) != len(out):
        raise ConfigError(f"{card.path}: protocol.zero_shot.{key} lists a class twice")
    return tuple(out)


def class_split(card: TaskCard, graph: MultimodalGraph
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """(train_nodes, valid_nodes, test_nodes, train_classes, candidate_classes) of a classification card.

    Supervised (no ``protocol.zero_shot``): every class is trained on and is a candidate; the split
    nodes are the graph's, minus nodes without a label. Zero-shot (``protocol.zero_shot: {seen_classes:
    [...], unseen_classes: [...]}``, ids or names): training nodes are the train-split nodes of seen
    classes; validation and test nodes are the valid/test-split nodes of unseen classes, and predictions
    are restricted to the unseen classes. Nodes of classes listed in neither are dropped. Idempotent:
    applying it to a graph whose splits it produced returns the same split.
    """
    if graph.labels is None:
        raise ConfigError(f"task {card.name}: class_split needs a graph with labels (family classification)")
    names = tuple(graph.class_names)
    zs = card.protocol.get("zero_shot")
    if zs:
        if not isinstance(zs, dict):
            raise ConfigError(f"{card.path}: protocol.zero_shot must be a mapping with seen_classes and "
                              f"unseen_classes")
        unknown = sorted(set(zs) - {"seen_classes", "unseen_classes"})
        if unknown:
            raise ConfigError(f"{card.path}: protocol.zero_shot: unknown key(s) {', '.join(unknown)}; "
                              f"expected seen_classes and unseen_classes")
        seen = _class_ids(zs.get("seen_classes"), names, card, "seen_classes")
        unseen = _class_ids(zs.get("unseen_classes"), names, card, "unseen_classes")
        both = sorted(set(seen) & set(unseen))
        if both:
            raise ConfigError(f"{card.path}: protocol.zero_shot: class(es) {both} are both seen and unseen")
        train_classes, candidates = tuple(sorted(seen)), tuple(sorted(unseen))
    else:
        train_classes = candidates = tuple(range(len(names)))

    def pick(split: str, classes: tuple[int, ...]) -> torch.Tensor:
        nodes = graph.splits.get(split, torch.zeros(0, dtype=torch.long))
        keep = torch.isin(graph.labels[nodes], torch.tensor(classes, dtype=torch.long))
        return nodes[keep]

    return (pick("train", train_classes), pick("valid", candidates), pick("test", candidates),
            train_classes, candidates)


def apply_class_split(card: TaskCard, graph: MultimodalGraph, notes: list[str]) -> MultimodalGraph:
    """The graph with ``class_split``'s nodes as its splits and the class lists in ``meta``."""
    train, valid, test, train_classes, candidates = class_split(card, graph)
    if card.protocol.get("zero_shot"):
        before = {s: int(graph.splits[s].numel()) if s in graph.splits else 0 for s in ("train", "valid", "test")}
        notes.append(f"zero-shot split: train keeps {train.numel():,} of {before['train']:,} nodes (seen "
                     f"classes {list(train_classes)}); valid {valid.numel():,} of {before['valid']:,} and "
                     f"test {test.numel():,} of {before['test']:,} (unseen classes {list(candidates)})")
    meta = dict(graph.meta)
    meta["train_classes"], meta["candidate_classes"] = train_classes, candidates
    describe = dict(meta.get("describe", {}))
    describe.update({"train_classes": list(train_classes), "candidate_classes": list(candidates),
                     "zero_shot": bool(card.protocol.get("zero_shot"))})
    meta["describe"] = describe
    return dataclasses.replace(graph, splits={"train": train, "valid": valid, "test": test}, meta=meta)


# --------------------------------------------------------------------------- reading the .pt files


def json_object_lines(lines: Iterable[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a line that is not a JSON object
    is a DataError naming ``path`` and the line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(rec).__name__}")
        yield lineno, rec
