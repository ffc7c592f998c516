"""Readers of the MM-GRAPH release files (edges, labels, split, node mapping, features, raw texts, images)
with their checks; ``mmbench.data.elefashion`` describes the layout."""

from __future__ import annotations

import json
import numbers
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from mmbench.api import FeatureSet
from mmbench.data.common import json_object_lines
from mmbench.errors import ConfigError, DataError
from mmbench.tasks import TaskCard

EDGES_FILE = "nc_edges-nodeid.pt"
LABELS_FILE = "labels-w-missing.pt"
SPLIT_FILE = "split.pt"
MAPPING_FILE = "node_mapping.pt"
REQUIRED = (EDGES_FILE, LABELS_FILE, SPLIT_FILE)
FEATURE_SUFFIX = "_feat.pt"
FEATURE_SOURCES = {"clip": "CLIP", "imagebind": "ImageBind", "t5vit": "T5 text + ViT image",
                   "t5dino": "T5 text + DINOv2 image"}
EDGE_TYPE = "co-purchase"
SPLIT_KEYS = {"train": ("train_idx", "train"), "valid": ("val_idx", "valid_idx", "valid", "val"),
              "test": ("test_idx", "test")}
ID_KEYS = ("id", "asin", "node_id", "nid", "item_id")
TEXT_KEYS = ("text", "raw_text")
TEXT_PART_KEYS = ("title", "description")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


def _torch_load(path: Path, notes: list[str]) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        notes.append(f"{path.name}: holds objects the safe loader refuses (e.g. numpy arrays); "
                     f"loaded with weights_only=False")
    except (OSError, RuntimeError, EOFError) as e:
        raise DataError(f"{path}: not a torch.save file ({e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001  (any unpickling failure means the file is not what we expect)
        raise DataError(f"{path}: could not be loaded with torch.load ({type(e).__name__}: {e})") from None


def _as_tensor(obj: Any, path: Path, what: str) -> torch.Tensor:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    try:
        if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, torch.Tensor) for x in obj):
            return torch.stack([x.detach().cpu().reshape(-1) for x in obj])
        return torch.as_tensor(obj)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: expected {what}, got {type(obj).__name__} ({e})") from None


def _to_index(t: torch.Tensor, path: Path, what: str) -> torch.Tensor:
    if t.dtype == torch.bool:
        raise DataError(f"{path}: expected {what} as integers, got a boolean tensor")
    if t.is_floating_point() and (not bool(torch.isfinite(t).all()) or not torch.equal(t, t.round())):
        raise DataError(f"{path}: expected {what} as integers, got non-integral floats")
    return t.long()


def read_edges(path: Path, num_nodes: int, notes: list[str]) -> torch.Tensor:
    """(E, 2) or (2, E) node-id pairs -> (2, E) long, as stored (no symmetrisation yet)."""
    obj = _torch_load(path, notes)
    t = _to_index(_as_tensor(obj, path, "an (E, 2) edge list of node ids"), path, "edge endpoints")
    if t.dim() != 2 or 2 not in t.shape:
        raise DataError(f"{path}: expected an (E, 2) or (2, E) edge list of node ids, got shape {tuple(t.shape)}")
    ei = t.t() if t.shape[1] == 2 else t  # (E, 2) as MM-GRAPH's loader reads it; (2, 2) counts as (E, 2)
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= num_nodes):
        raise DataError(f"{path}: node id {int(ei.max()) if int(ei.max()) >= num_nodes else int(ei.min())} "
                        f"outside 0..{num_nodes - 1} ({num_nodes:,} nodes in {LABELS_FILE})")
    return ei.contiguous()


def read_labels(path: Path, card: TaskCard, notes: list[str]) -> torch.Tensor:
    """(N,) long with -1 where the label is missing (negative, NaN, or the card's ``missing_label``)."""
    t = _as_tensor(_torch_load(path, notes), path, "one class id per node")
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1:
        raise DataError(f"{path}: expected one class id per node (shape (N,)), got shape {tuple(t.shape)}")
    if t.dtype == torch.bool:
        raise DataError(f"{path}: expected integer class ids, got booleans")
    if t.is_floating_point():
        missing = torch.isnan(t)
        finite = t[~missing]
        if not torch.isfinite(finite).all() or not torch.equal(finite, finite.round()):
            raise DataError(f"{path}: expected integer class ids (NaN or -1 for missing), got other floats")
        labels = torch.where(missing, torch.full_like(t, -1), t).long()
    else:
        labels = t.long()
    extra = card.dataset.get("missing_label")
    if extra is not None:
        labels = torch.where(labels == int(extra), torch.full_like(labels, -1), labels)
    labels = torch.where(labels < 0, torch.full_like(labels, -1), labels)
    return labels


def read_split(path: Path, num_nodes: int, notes: list[str]) -> dict[str, torch.Tensor]:
    obj = _torch_load(path, notes)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with train_idx, val_idx and test_idx, got {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for split, keys in SPLIT_KEYS.items():
        key = next((k for k in keys if k in obj), None)
        if key is None:
            raise DataError(f"{path}: no {keys[0]!r} entry (found keys {sorted(map(str, obj))}); expected "
                            f"train_idx, val_idx and test_idx")
        t = _as_tensor(obj[key], path, f"node ids under {key!r}").reshape(-1)
        if t.dtype == torch.bool:
            if t.numel() != num_nodes:
                raise DataError(f"{path}: the boolean mask {key!r} has {t.numel():,} entries, expected {num_nodes:,}")
            t = t.nonzero().reshape(-1)
        t = _to_index(t, path, f"node ids under {key!r}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_nodes):
            raise DataError(f"{path}: {key!r} holds node ids outside 0..{num_nodes - 1}")
        uniq = torch.unique(t)
        if uniq.numel() != t.numel():
            notes.append(f"{path.name}: {key!r} lists {t.numel() - uniq.numel():,} node(s) more than once; kept once")
        out[split] = uniq
    return out


def _int_like(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.numel() == 1 and not x.is_floating_point() and x.dtype != torch.bool
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def read_node_mapping(path: Path, num_nodes: int, notes: list[str]) -> list[str | None]:
    """node id -> raw id (e.g. the Amazon asin), from {raw: node}, {node: raw} or a list by node id."""
    obj = _torch_load(path, notes)
    raw: list[str | None] = [None] * num_nodes

    if isinstance(obj, dict):
        items = list(obj.items())

        def node_ids(values: Any) -> bool:
            return all(_int_like(x) and 0 <= int(x) < num_nodes for x in values)

        if node_ids(v for _, v in items):  # {raw id: node id}, the documented direction (wins a tie)
            pairs = [(int(v), k) for k, v in items]
        elif node_ids(k for k, _ in items):  # {node id: raw id}
            pairs = [(int(k), v) for k, v in items]
        else:
            raise DataError(f"{path}: expected a dict from raw ids to node ids 0..{num_nodes - 1} (or the "
                            f"reverse), got {len(items):,} entries that fit neither")
    elif isinstance(obj, (list, tuple)) or (hasattr(obj, "__len__") and not isinstance(obj, (str, bytes))):
        seq = list(obj)
        if len(seq) != num_nodes:
            raise DataError(f"{path}: a list of raw ids needs one entry per node ({num_nodes:,}), got {len(seq):,}")
        pairs = list(enumerate(seq))
    else:
        raise DataError(f"{path}: expected a dict from raw ids to node ids, got {type(obj).__name__}")
    for node, key in pairs:
        k = key.item() if isinstance(key, torch.Tensor) else key
        raw[node] = None if k is None else str(k)
    missing = sum(r is None for r in raw)
    if missing:
        notes.append(f"{path.name}: {missing:,} node(s) have no raw id")
    return raw


def read_features(path: Path, num_nodes: int, notes: list[str]) -> FeatureSet:
    t = _as_tensor(_torch_load(path, notes), path, f"a ({num_nodes}, D) float feature matrix")
    if t.dim() != 2 or t.shape[0] != num_nodes:
        raise DataError(f"{path}: expected a ({num_nodes:,}, D) feature matrix (one row per node in "
                        f"{LABELS_FILE}), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    finite = torch.isfinite(t).all(dim=1)
    present = finite & (t != 0).any(dim=1)
    if not bool(finite.all()):
        t = torch.where(finite.unsqueeze(1), t, torch.zeros_like(t))
    name = path.name[: -len(FEATURE_SUFFIX)]
    return FeatureSet(values=t, present=present,
                      source=f"MM-GRAPH {path.name} ({FEATURE_SOURCES.get(name, name)}), precomputed")


def _record_text(rec: dict[str, Any]) -> str | None:
    for key in TEXT_KEYS:
        if key in rec and rec[key] is not None:
            v = rec[key]
            text = " ".join(str(x) for x in v if x is not None) if isinstance(v, list) else str(v)
            return text.strip() or None
    parts = []
    for key in TEXT_PART_KEYS:
        v = rec.get(key)
        if isinstance(v, list):
            v = " ".join(str(x) for x in v if x is not None)
        if v is not None and str(v).strip():
            parts.append(str(v).strip())
    return "\n".join(parts) or None


def read_texts(path: Path, num_nodes: int, raw_ids: list[str | None] | None,
               notes: list[str]) -> list[str | None]:
    """Node texts from a jsonl file; ids go through ``node_mapping`` first, else are node ids."""
    by_raw = {r: i for i, r in enumerate(raw_ids or []) if r is not None}
    texts: list[str | None] = [None] * num_nodes
    unmatched = dupes = 0
    with_id: bool | None = None
    position = 0
    with open(path, encoding="utf-8") as f:
        for lineno, rec in json_object_lines(f, path):
            key = next((k for k in ID_KEYS if k in rec), None)
            if with_id is None:
                with_id = key is not None
            elif with_id != (key is not None):
                raise DataError(f"{path}:{lineno}: some lines carry an id ({', '.join(ID_KEYS)}) and others "
                                f"do not; expected all or none")
            if key is None:
                node = position if position < num_nodes else None
            else:
                rid = rec[key]
                node = by_raw.get(str(rid))
                as_index = not isinstance(rid, bool) and (isinstance(rid, int) or (isinstance(rid, str)
                                                                                     and rid.isdigit()))
                if node is None and as_index and 0 <= int(rid) < num_nodes:
                    node = int(rid)
            position += 1
            if node is None:
                unmatched += 1
                continue
            if texts[node] is not None:
                dupes += 1
                continue
            texts[node] = _record_text(rec)
    if with_id is False and position != num_nodes:
        notes.append(f"{path.name}: lines carry no id, so line order is node order, but there are "
                     f"{position:,} lines for {num_nodes:,} nodes")
    if unmatched:
        notes.append(f"{path.name}: {unmatched:,} line(s) name no node of the graph; ignored")
    if dupes:
        notes.append(f"{path.name}: {dupes:,} line(s) repeat a node already read; the first was kept")
    return texts


def image_index(img_dir: Path) -> dict[str, Path]:
    """File stem -> path for every image under ``img_dir`` (recursively; the first in sorted order wins)."""
    out: dict[str, Path] = {}
    for root, dirs, files in os.walk(img_dir, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            p = Path(root) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                out.setdefault(p.stem, p)
    return out


def _text_candidates(d: Path, release: str) -> list[Path]:
    name = f"{release}-raw-text.jsonl"
    return [d / "raw-data" / name, d / name, d / "raw-text.jsonl"]


def _image_dir_candidates(d: Path, release: str) -> list[Path]:
    return [d / "images", d / f"{release}-images", d / "raw-data" / f"{release}-images"]


def _release(card: TaskCard) -> str:
    return str(card.dataset.get("release_name", card.dataset.get("dir", card.name)))


def _class_names(card: TaskCard, d: Path, num_classes: int, notes: list[str]) -> tuple[str, ...]:
    names = card.dataset.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(x, str) for x in names)):
        raise ConfigError(f"{card.path}: dataset.class_names must be a list of strings")
    file = card.dataset.get("class_names_file")
    if file:
        p = d / str(file)
        if p.exists():
            text = p.read_text(encoding="utf-8")
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                loaded = [line.strip() for line in text.splitlines() if line.strip()]
            if not isinstance(loaded, list) or not all(isinstance(x, str) for x in loaded):
                raise DataError(f"{p}: expected a JSON list of class names or one name per line")
            names = loaded
    names = list(names) if names else [f"class_{i}" for i in range(num_classes)]
    if len(set(names)) != len(names):
        raise ConfigError(f"{card.path}: the class names are not unique")
    return tuple(names)
