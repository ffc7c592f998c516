"""Bring-your-own multimodal graph: a folder of plain files and a YAML card are a new task.

Loader ``folder`` (format spec and a complete card: docs/byo-graph.md)::

    nodes.jsonl   one JSON object per line: id (string or int; compared as strings), text, image (a path
                  relative to the folder), label (a class name; classification), target (a string;
                  generation), kind (a role name, default "node"); only id is required
    edges.tsv     source<TAB>target<TAB>type per line (type optional when the card has one edge type);
                  optional header line ``source\\ttarget\\ttype``; blank lines and #-comments skipped
    split.json    {"train": [ids], "valid": [ids], "test": [ids]}
    labels.json   ["class name", ...] (classification only): the class ids are the positions

Card options under ``dataset``: ``path`` (the folder, absolute or relative to the card's directory) or
``dir`` (a folder under $MMBENCH_DATA, default the task name); ``edge_types`` (default text-text,
image-image, text-image); ``directed`` (default false: every edge is stored in both directions);
``missing_images`` (``error``, the default, or ``skip``: the node keeps no image, counted in the notes);
``expected`` (counts checked on load: nodes, edges, classes, train, valid, test, with_text, with_image).
The family (classification or generation) comes from the card. Every problem in the files raises
``DataError`` naming the file and line; a bad card option raises ``ConfigError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mmbench import paths
from mmbench.data import register_loader, register_preparer
from mmbench.data.common import apply_class_split, json_object_lines, undirected, verify_expected
from mmbench.data.graph import EDGE_TYPES, GraphTaskData, MultimodalGraph
from mmbench.data.prepare import place, staged
from mmbench.errors import ConfigError, DataError, closest
from mmbench.io import file_sha256, utc_now
from mmbench.tasks import TaskCard

NODES, EDGES, SPLIT, LABELS = "nodes.jsonl", "edges.tsv", "split.json", "labels.json"
SPLITS = ("train", "valid", "test")
HEADER = ("source", "target", "type")


def folder_of(card: TaskCard) -> Path:
    """The card's graph folder: ``dataset.path`` (relative to the card file) or ``$MMBENCH_DATA/<dir>``."""
    if card.dataset.get("path"):
        p = Path(str(card.dataset["path"])).expanduser()
        if not p.is_absolute():
            p = (card.path.parent if card.path else Path.cwd()) / p
        return Path(os.path.abspath(p))  # drops the ../ of card-relative paths from messages
    return paths.data_root() / str(card.dataset.get("dir", card.name))


def _options(card: TaskCard) -> tuple[tuple[str, ...], bool, str]:
    types = card.dataset.get("edge_types", list(EDGE_TYPES))
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types) \
            or len(set(types)) != len(types):
        raise ConfigError(f"{card.path}: dataset.edge_types must be a non-empty list of distinct names")
    directed = card.dataset.get("directed", False)
    if not isinstance(directed, bool):
        raise ConfigError(f"{card.path}: dataset.directed must be true or false, got {directed!r}")
    missing = card.dataset.get("missing_images", "error")
    if missing not in ("error", "skip"):
        raise ConfigError(f"{card.path}: dataset.missing_images must be 'error' or 'skip', got {missing!r}")
    if card.family not in ("classification", "generation"):
        raise ConfigError(f"{card.path}: the folder loader serves families classification and generation, "
                          f"not {card.family}")
    return tuple(types), directed, missing


# --------------------------------------------------------------------------- the files
def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_labels_json(path: Path) -> tuple[str, ...]:
    text = _read(path)
    try:
        names = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(names, list) or not names or not all(isinstance(x, str) and x for x in names):
        raise DataError(f"{path}:1: expected a non-empty JSON list of class names, e.g. [\"cat\", \"dog\"]")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            token = json.dumps(name)
            again = text.find(token, text.find(token) + 1)
            raise DataError(f"{path}:{_line_of(text, again)}: class {name!r} is listed twice")
        seen.add(name)
    return tuple(names)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_nodes(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) per node, in file order; ids normalised to strings."""
    out: list[tuple[int, dict[str, Any]]] = []
    first_line: dict[str, int] = {}
    for lineno, rec in json_object_lines(_read(path).splitlines(), path):
        if "id" not in rec:
            raise DataError(f"{path}:{lineno}: the node has no \"id\"")
        nid = rec["id"]
        if isinstance(nid, bool) or not isinstance(nid, (str, int)) or (isinstance(nid, str) and not nid.strip()):
            raise DataError(f"{path}:{lineno}: \"id\" must be a non-empty string or an integer, got {nid!r}")
        nid = str(nid)
        if nid in first_line:
            raise DataError(f"{path}:{lineno}: duplicate node id {nid!r} (first on line {first_line[nid]})")
        first_line[nid] = lineno
        for key in ("text", "image", "label", "target", "kind"):
            v = rec.get(key)
            if v is not None and not isinstance(v, str):
                raise DataError(f"{path}:{lineno}: \"{key}\" must be a string or null, got {v!r}")
        rec = {**rec, "id": nid}
        out.append((lineno, rec))
    return out


def read_edges_tsv(path: Path, index: dict[str, int], types: tuple[str, ...]
                   ) -> tuple[list[tuple[int, int, int]], int]:
    """(source, target, type id) per edge line; returns them and the number of lines read."""
    edges: list[tuple[int, int, int]] = []
    first = True
    for lineno, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.rstrip("\r").split("\t")
        if first and tuple(c.strip().lower() for c in cols) in (HEADER, HEADER[:2]):
            first = False
            continue
        first = False
        if len(cols) == 2 and len(types) == 1:
            cols.append(types[0])
        if len(cols) != 3:
            raise DataError(f"{path}:{lineno}: expected source<TAB>target<TAB>type, got {len(cols)} "
                            f"tab-separated field(s)" + (" (type may be left out only when the card lists one "
                                                         "edge type)" if len(cols) == 2 else ""))
        src, dst, etype = (c.strip() for c in cols)
        for end, nid in (("source", src), ("target", dst)):
            if nid not in index:
                raise DataError(f"{path}:{lineno}: unknown {end} node id {nid!r} (not in {NODES})."
                                f"{closest(nid, index)}")
        if etype not in types:
            raise DataError(f"{path}:{lineno}: unknown edge type {etype!r}; the card allows "
                            f"{', '.join(types)} (dataset.edge_types).{closest(etype, types)}")
        edges.append((index[src], index[dst], types.index(etype)))
    return edges, len(edges)


def read_split_json(path: Path, index: dict[str, int]) -> dict[str, list[int]]:
    text = _read(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:1: expected {{\"train\": [ids], \"valid\": [ids], \"test\": [ids]}}")
    for key in obj:
        if key not in SPLITS:
            raise DataError(f"{path}:{_line_of(text, text.find(json.dumps(key)))}: unknown split {key!r}; "
                            f"expected train, valid, test.{closest(key, SPLITS)}")
    missing = [s for s in SPLITS if s not in obj]
    if missing:
        raise DataError(f"{path}:1: no {', '.join(missing)} list; expected train, valid and test")
    where: dict[int, str] = {}
    out: dict[str, list[int]] = {}
    for split in SPLITS:
        ids = obj[split]
        start = text.find(json.dumps(split))
        if not isinstance(ids, list):
            raise DataError(f"{path}:{_line_of(text, start)}: {split!r} must be a list of node ids")
        nodes: list[int] = []
        cursor = start
        for nid in ids:
            token = json.dumps(nid)
            found = text.find(token, cursor)
            cursor = found + len(token) if found >= 0 else cursor
            line = _line_of(text, found if found >= 0 else start)
            if isinstance(nid, bool) or not isinstance(nid, (str, int)):
                raise DataError(f"{path}:{line}: {split}: {nid!r} is not a node id (string or integer)")
            key = str(nid)
            if key not in index:
                raise DataError(f"{path}:{line}: {split}: unknown node id {key!r} (not in {NODES})."
                                f"{closest(key, index)}")
            i = index[key]
            if i in where:
                same = where[i] == split
                raise DataError(f"{path}:{line}: node {key!r} is listed "
                                + (f"twice in {split}" if same else f"in both {where[i]} and {split}"))
            where[i] = split
            nodes.append(i)
        out[split] = nodes
    return out


# --------------------------------------------------------------------------- the loader
def _status(card: TaskCard) -> tuple[bool, str]:
    d = folder_of(card)
    if not (d / NODES).exists():
        how = "see docs/byo-graph.md" if card.dataset.get("path") else \
            f"run: mmbench data prepare {card.name} --from DIR"
        return False, f"no {NODES} in {d} ({how})"
    return True, f"folder {d}"


@register_loader("folder", _status)
def load_folder(card: TaskCard, verify: bool = True) -> GraphTaskData:
    """A graph folder in the bring-your-own format (module doc; docs/byo-graph.md)."""
    return load_folder_from(card, folder_of(card), verify)


def load_folder_from(card: TaskCard, d: Path, verify: bool) -> GraphTaskData:
    types, directed, missing_images = _options(card)
    classification = card.family == "classification"
    required = [NODES, EDGES, SPLIT] + ([LABELS] if classification else [])
    absent = [f for f in required if not (d / f).exists()]
    if absent:
        how = ("see the folder format in docs/byo-graph.md" if card.dataset.get("path") else
               f"put the folder there or run: mmbench data prepare {card.name} --from DIR")
        raise DataError(f"task {card.name}: missing {', '.join(absent)} in {d} ({how})")
    notes: list[str] = []

    records = read_nodes(d / NODES)
    index = {rec["id"]: i for i, (_, rec) in enumerate(records)}
    n = len(records)
    class_names = read_labels_json(d / LABELS) if classification else ()

    texts: list[str | None] = []
    images: list[str | None] = []
    labels = torch.full((n,), -1, dtype=torch.long)
    targets: list[str | None] = []
    skipped = 0
    for i, (lineno, rec) in enumerate(records):
        texts.append(rec.get("text"))
        img = rec.get("image")
        if img is not None:
            p = d / img
            if not p.is_file():
                if missing_images == "error":
                    raise DataError(f"{d / NODES}:{lineno}: image {img!r} of node {rec['id']!r} does not exist "
                                    f"({p}); fix the path or set dataset.missing_images: skip in the card")
                skipped += 1
                img = None
            else:
                img = str(p)
        images.append(img)
        if classification and rec.get("label") is not None:
            name = rec["label"]
            if name not in class_names:
                raise DataError(f"{d / NODES}:{lineno}: label {name!r} of node {rec['id']!r} is not in {LABELS}."
                                f"{closest(name, class_names)}")
            labels[i] = class_names.index(name)
        targets.append(rec.get("target"))
    if skipped:
        notes.append(f"{NODES}: {skipped:,} image file(s) missing; those nodes have no image "
                     f"(missing_images: skip)")

    edge_list, _ = read_edges_tsv(d / EDGES, index, types)
    if edge_list:
        raw = torch.tensor(edge_list, dtype=torch.long).t()
    else:
        raw = torch.zeros((3, 0), dtype=torch.long)
    edge_index, edge_type = _store_edges(raw, n, len(types), directed, notes)

    split_ids = read_split_json(d / SPLIT, index)
    what = "label" if classification else "target"
    for split, nodes in split_ids.items():
        for i in nodes:
            lineno, rec = records[i]
            if rec.get(what) is None:
                raise DataError(f"{d / SPLIT}: node {rec['id']!r} ({split}; {NODES} line {lineno}) has no "
                                f"\"{what}\"; every train/valid/test node of a {card.family} task needs one")
    splits = {s: torch.tensor(v, dtype=torch.long) for s, v in split_ids.items()}

    graph = MultimodalGraph(
        num_nodes=n, texts=tuple(texts), images=tuple(images),
        kinds=tuple(rec.get("kind") or "node" for _, rec in records),
        edge_index=edge_index, edge_type=edge_type, edge_type_names=types,
        labels=labels if classification else None, class_names=class_names,
        targets=None if classification else tuple(targets), splits=splits,
        meta={"node_ids": tuple(rec["id"] for _, rec in records), "image_root": str(d),
              "describe": {"folder": d.name, "directed": directed}})
    actual = dict(graph.stats())
    verified = verify_expected(card, actual, verify, d, notes)
    if classification:
        graph = apply_class_split(card, graph, notes)
    return GraphTaskData(task=card.name, graph=graph, hops=int(card.protocol.get("hops", 2)),
                         max_nodes=int(card.protocol.get("max_nodes", 16)), verified=verified, notes=notes)


def _store_edges(raw: torch.Tensor, n: int, num_types: int, directed: bool, notes: list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, E) source/target/type -> (2, M) edge_index and (M,) types, both directions unless ``directed``;
    repeated (source, target, type) triples are stored once."""
    if not raw.shape[1]:
        return torch.zeros((2, 0), dtype=torch.long), torch.zeros(0, dtype=torch.long)
    parts = []
    for t in range(num_types):
        sel = raw[:2, raw[2] == t]
        if not sel.shape[1]:
            continue
        if directed:
            key = torch.unique(sel[0] * n + sel[1])
            ei = torch.stack([key // n, key % n])
        else:
            loops = sel[:, sel[0] == sel[1]]
            ei = undirected(sel, n, [], EDGES)
            if loops.shape[1]:  # a self-loop in an undirected folder graph is kept once
                ei = torch.cat([ei, torch.unique(loops, dim=1)], dim=1)
        parts.append((ei, torch.full((ei.shape[1],), t, dtype=torch.long)))
    ei = torch.cat([p[0] for p in parts], dim=1)
    et = torch.cat([p[1] for p in parts])
    stored = ei.shape[1]
    expected = raw.shape[1] if directed else 2 * raw.shape[1] - int((raw[0] == raw[1]).sum())
    if stored < expected:
        notes.append(f"{EDGES}: {expected - stored:,} repeated edge(s) stored once")
    return ei, et


# --------------------------------------------------------------------------- mmbench data prepare
@register_preparer("folder")
def prepare(card: TaskCard, src: Path, link: bool = False, verify: bool = True) -> dict[str, Any]:
    """Validate a graph folder and copy it (files and referenced images) under $MMBENCH_DATA/<dir>."""
    if card.dataset.get("path"):
        raise ConfigError(f"task {card.name}: its card reads the folder in place (dataset.path: "
                          f"{card.dataset['path']}); there is nothing to prepare")
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"--from {src}: not a directory")
    load_folder_from(card, src, verify=verify)  # validate first; raises on any problem in the files
    dest = folder_of(card)

    def build(stage: Path) -> dict[str, Any]:
        copied: dict[str, str] = {}
        names = [NODES, EDGES, SPLIT] + ([LABELS] if (src / LABELS).exists() else [])
        for name in names:
            place(src / name, stage / name, link)
            copied[name] = str(src / name)
        images = 0
        for lineno, rec in read_nodes(src / NODES):
            img = rec.get("image")
            if not img or not (src / img).is_file():
                continue
            if not (src / img).resolve().is_relative_to(src.resolve()):
                raise DataError(f"{src / NODES}:{lineno}: image {img!r} lies outside {src}; prepare copies a "
                                f"self-contained folder (use dataset.path to read a folder in place)")
            target = stage / (src / img).resolve().relative_to(src.resolve())
            if not target.exists():
                place(src / img, target, link)
                images += 1
        ds = load_folder_from(card, stage, verify=verify)
        return {"task": card.name, "prepared_at": utc_now(), "source": str(src.resolve()), "linked": link,
                "stats": ds.stats(), "notes": ds.notes, "images": images,
                "files": {k: {"from": v, "sha256": file_sha256(stage / k)} for k, v in sorted(copied.items())}}

    return staged(dest, build, src, verify)
