"""MM-GRAPH node-classification releases (Ele-fashion; Goodreads-NC has the same layout) as a ``GraphTaskData``.

Loader ``mm-graph`` reads ``$MMBENCH_DATA/<dataset.dir>/`` as ``mmbench data prepare`` leaves it::

    nc_edges-nodeid.pt                   edge list (required)
    labels-w-missing.pt                  one class id per node, missing labels marked (required)
    split.pt                             {"train_idx", "val_idx", "test_idx"} node ids (required)
    node_mapping.pt                      raw product id <-> node id (optional; names texts and images)
    clip_feat.pt, imagebind_feat.pt,     precomputed (N, D) node features (each optional), one
    t5vit_feat.pt, t5dino_feat.pt        ``FeatureSet`` each, named clip / imagebind / t5vit / t5dino
    raw-data/<release>-raw-text.jsonl    product texts (optional; also accepted beside the .pt files)
    images/                              product images named after the raw id or node id (optional)

The graph: one ``product`` node per row of ``labels-w-missing.pt``; co-purchase edges stored in both
directions under the single edge type ``co-purchase`` (duplicates merged, self-loops dropped, both
counted in the notes); labels -1 where missing; splits ``train``/``valid``/``test`` from ``split.pt``
without the nodes whose label is missing (counted in the notes). ``class_split`` derives the training
nodes and the candidate classes for supervised and zero-shot cards (``protocol.zero_shot``); the loader
stores its result as the graph's splits and in ``graph.meta``.

What is verified and what is assumed (no MM-GRAPH file was available while this was written):

* Verified by reading the MM-GRAPH code (``mm-graph-benchmark/mm-graph-benchmark``, ``nc/nc_dataset.py``,
  ``nc/main.py``) and its README: the file names above; ``torch.tensor(torch.load(edges)).t()[0]`` /
  ``[1]`` are the sources / targets, i.e. the edge list is (E, 2); labels and edges go through
  ``torch.tensor(..., dtype=int64)``, so they are tensors, arrays or lists of integers; ``split.pt`` is a
  dict whose ``train_idx``/``val_idx``/``test_idx`` index a node mask; ``num_nodes`` is the feature row
  count; the baselines symmetrise the graph and remove self-loops (as done here); the MGAT/MMGCN
  baselines split every ``*_feat.pt`` into a text half and an image half (concatenated encoders); raw
  images are fetched through ``node_mapping.pt`` (raw id <-> node id) and saved as ``<asin>.jpg``
  (``download_img.py``); on the Hub the raw texts and images live in a top-level ``raw-data/`` folder
  (``ele-fashion-raw-text.jsonl``, ``ele-fashion-images.tar``).
* Secondary (third-party descriptions, unverified): labels are a LongTensor with -1 for unlabelled
  nodes; ``node_mapping.pt`` is a dict from raw ids to graph indices; the jsonl rows are
  ``{"id": ..., "text": ...}`` (another third-party loader reads ``id``/``asin`` and ``raw_text``, a
  string or a list of strings); Ele-fashion has 97,766 nodes and 11 classes (Graph4MM summaries).
  **Caveat:** MM-GRAPH's own node-classification code hard-codes ``num_classes = 12`` for Ele-fashion;
  if the release holds labels 0..11, verification fails with "classes: found 12, published 11" (see the
  card's notes).
* Assumed, hence tolerated: edges as (E, 2) or (2, E) (a (2, 2) tensor is read as (E, 2)), or a pair of
  1-D id tensors; labels as tensor / array / list, int or float, missing as any negative value or NaN,
  plus the card's optional ``dataset.missing_label`` value; split values as id lists or boolean masks
  under ``train_idx``/``train``, ``val_idx``/``valid_idx``/``valid``/``val``, ``test_idx``/``test``;
  ``node_mapping`` as {raw id: node id}, {node id: raw id} or a list indexed by node id; jsonl ids under
  ``id``/``asin``/``node_id``/``nid``/``item_id`` (a raw id through ``node_mapping`` first, else a node
  id), or no id at all (line order = node order); texts under ``text``/``raw_text`` (lists joined), else
  ``title`` and ``description`` joined; feature rows that are all zero or hold NaN/inf mark an absent
  modality; files that need full unpickling (numpy arrays) are loaded with ``weights_only=False`` after
  the safe loader refuses them (noted).
* Class names are unknown: the card lists placeholders ``class_0`` .. ``class_10``; a JSON list or a
  one-name-per-line file named by ``dataset.class_names_file`` in the data folder replaces them.
"""

from __future__ import annotations

import json
import numbers
import os
import pickle
import shutil
import tarfile
from pathlib import Path
from typing import Any

import torch

from mmbench.api import FeatureSet
from mmbench.data import register_loader, register_preparer
from mmbench.data.common import (  # noqa: F401
    apply_class_split,
    class_split,
    dataset_dir,
    missing_data_message,
    undirected,
    verify_expected,
)
from mmbench.data.graph import GraphTaskData, MultimodalGraph
from mmbench.data.prepare import place, staged
from mmbench.errors import ConfigError, DataError
from mmbench.io import file_sha256, utc_now
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


# --------------------------------------------------------------------------- shared by the graph loaders
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


# --------------------------------------------------------------------------- texts and images
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
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(rec).__name__}")
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


# --------------------------------------------------------------------------- the loader
def _status(card: TaskCard) -> tuple[bool, str]:
    d = dataset_dir(card)
    if any(not (d / f).exists() for f in REQUIRED):
        return False, f"not prepared (run: mmbench data prepare {card.name} --from DIR)"
    return True, f"prepared at {d}"


@register_loader("mm-graph", _status)
def load_mm_graph(card: TaskCard, verify: bool = True) -> GraphTaskData:
    """An MM-GRAPH node-classification release under ``$MMBENCH_DATA/<dataset.dir>`` (see the module doc)."""
    return load_mm_graph_from(card, dataset_dir(card), verify)


def load_mm_graph_from(card: TaskCard, d: Path, verify: bool) -> GraphTaskData:
    """The ``mm-graph`` loader for an explicit folder (``prepare`` verifies its staging copy with it)."""
    if card.family != "classification":
        raise ConfigError(f"{card.path}: the mm-graph loader serves family classification, not {card.family}")
    missing = [f for f in REQUIRED if not (d / f).exists()]
    if missing:
        raise DataError(missing_data_message(card, f"missing {', '.join(missing)} in {d}"))
    notes: list[str] = []
    release = _release(card)

    labels = read_labels(d / LABELS_FILE, card, notes)
    n = int(labels.numel())
    known = labels >= 0
    num_classes = int(labels[known].max()) + 1 if bool(known.any()) else 0

    edges = read_edges(d / EDGES_FILE, n, notes)
    stored_pairs = int(edges.shape[1])
    edge_index = undirected(edges, n, notes, EDGES_FILE)

    splits = read_split(d / SPLIT_FILE, n, notes)
    seen: dict[int, str] = {}
    for split in ("train", "valid", "test"):
        keep = torch.ones(splits[split].numel(), dtype=torch.bool)
        for j, v in enumerate(splits[split].tolist()):
            if v in seen:
                if verify:
                    raise DataError(f"{d / SPLIT_FILE}: node {v} is in both {seen[v]} and {split}")
                keep[j] = False
            else:
                seen[v] = split
        if int((~keep).sum()):
            notes.append(f"{SPLIT_FILE}: dropped {int((~keep).sum()):,} {split} node(s) already in an "
                         f"earlier split")
        splits[split] = splits[split][keep]
    for split in ("train", "valid", "test"):
        has = labels[splits[split]] >= 0
        dropped = int((~has).sum())
        if dropped:
            notes.append(f"{split}: excluded {dropped:,} node(s) whose label is missing in {LABELS_FILE}")
        splits[split] = splits[split][has]

    raw_ids = read_node_mapping(d / MAPPING_FILE, n, notes) if (d / MAPPING_FILE).exists() else None

    texts: list[str | None] = [None] * n
    text_file = next((p for p in _text_candidates(d, release) if p.exists()), None)
    if text_file is not None:
        texts = read_texts(text_file, n, raw_ids, notes)
    else:
        notes.append(f"no raw-data/{release}-raw-text.jsonl in {d}; node texts absent")

    images: list[str | None] = [None] * n
    img_dir = next((p for p in _image_dir_candidates(d, release) if p.is_dir()), None)
    if img_dir is not None:
        index = image_index(img_dir)
        for i in range(n):
            p = index.get(raw_ids[i]) if raw_ids is not None and raw_ids[i] is not None else None
            p = p or index.get(str(i))
            images[i] = str(p) if p is not None else None
    else:
        notes.append(f"no images/ folder in {d}; raw images absent (precomputed features may still hold "
                     f"the image modality)")

    wanted = card.dataset.get("features")
    features: dict[str, FeatureSet] = {}
    for p in sorted(d.glob(f"*{FEATURE_SUFFIX}")):
        name = p.name[: -len(FEATURE_SUFFIX)]
        if wanted is None or name in wanted:
            features[name] = read_features(p, n, notes)
    for name in wanted or []:
        if name not in features:
            notes.append(f"{name}{FEATURE_SUFFIX} not found in {d}; feature set {name!r} absent")

    actual = {"nodes": n, "classes": num_classes, "edges": int(edge_index.shape[1]),
              "undirected_edges": int(edge_index.shape[1]) // 2, "edge_rows": stored_pairs,
              **{s: int(v.numel()) for s, v in splits.items()}}
    verified = verify_expected(card, actual, verify, d, notes)

    class_names = _class_names(card, d, num_classes, notes)
    if num_classes > len(class_names):
        msg = (f"{d / LABELS_FILE}: labels go up to {num_classes - 1}, but {card.path} names only "
               f"{len(class_names)} classes (MM-GRAPH's own code uses num_classes = 12 for Ele-fashion; if one "
               f"id marks 'missing', set dataset.missing_label)")
        if verify:
            raise DataError(msg)
        notes.append(msg + "; placeholder names added")
        class_names = class_names + tuple(f"class_{i}" for i in range(len(class_names), num_classes))

    describe = {"edge_rows": stored_pairs, "undirected_edges": actual["undirected_edges"],
                "missing_labels": int((~known).sum()), "label_values": num_classes,
                "feature_coverage": {k: float(v.present.float().mean()) for k, v in features.items()},
                "text_source": text_file.name if text_file else None}
    graph = MultimodalGraph(
        num_nodes=n, texts=tuple(texts), images=tuple(images), kinds=("product",) * n,
        edge_index=edge_index, edge_type=torch.zeros(edge_index.shape[1], dtype=torch.long),
        edge_type_names=(EDGE_TYPE,), labels=labels, class_names=class_names, features=features,
        splits=splits, meta={"raw_ids": tuple(raw_ids) if raw_ids else None, "describe": describe,
                             "image_root": str(d)})
    graph = apply_class_split(card, graph, notes)
    return GraphTaskData(task=card.name, graph=graph, hops=int(card.protocol.get("hops", 2)),
                         max_nodes=int(card.protocol.get("max_nodes", 16)), verified=verified, notes=notes)


# --------------------------------------------------------------------------- mmbench data prepare
def _find_release_dir(src: Path, release: str) -> Path:
    for cand in (src, src / release, src / "mm-graph" / release):
        if (cand / LABELS_FILE).exists():
            return cand
    hits = sorted(p.parent for p in src.rglob(LABELS_FILE))
    named = [h for h in hits if release.lower() in str(h).lower()]
    if named or hits:
        return (named or hits)[0]
    raise DataError(f"--from {src}: found no {LABELS_FILE} (expected the MM-GRAPH layout: {release}/ with "
                    f"{', '.join(REQUIRED)}, or those files directly in the folder)")


def _extract_images(tar_path: Path, dest: Path, notes: list[str]) -> int:
    """Image members of ``tar_path`` into ``dest`` under their base names (no paths from the archive)."""
    count = dupes = 0
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        for m in tar:
            name = Path(m.name).name
            if not m.isfile() or Path(name).suffix.lower() not in IMAGE_SUFFIXES or name.startswith("."):
                continue
            target = dest / name
            if target.exists():
                dupes += 1
                continue
            f = tar.extractfile(m)
            if f is None:
                continue
            with f, open(target, "wb") as out:
                shutil.copyfileobj(f, out)
            count += 1
    if dupes:
        notes.append(f"{tar_path.name}: {dupes:,} image(s) repeat a file name already extracted; skipped")
    return count


@register_preparer("mm-graph")
def prepare(card: TaskCard, src: Path, link: bool = False, verify: bool = True) -> dict[str, Any]:
    """Gather an MM-GRAPH release from ``src`` (a Hub download with ``<release>/`` and ``raw-data/``, or
    a flat folder), verify it, and move it under ``$MMBENCH_DATA/<dataset.dir>`` with a MANIFEST."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DataError(f"--from {src}: not a directory")
    release = _release(card)
    root = _find_release_dir(src, release)
    return staged(dataset_dir(card), lambda stage: _stage_and_verify(card, src, root, stage, link, verify), src,
                  verify)


def _stage_and_verify(card: TaskCard, src: Path, root: Path, dest: Path, link: bool,
                      verify: bool = True) -> dict[str, Any]:
    release = _release(card)
    copied: dict[str, str] = {}
    notes: list[str] = []
    missing = [f for f in REQUIRED if not (root / f).exists()]
    if missing:
        raise DataError(f"--from {src}: {root} lacks {', '.join(missing)}")
    names = [*REQUIRED, MAPPING_FILE, *sorted(p.name for p in root.glob(f"*{FEATURE_SUFFIX}"))]
    if card.dataset.get("class_names_file"):
        names.append(str(card.dataset["class_names_file"]))
    for name in names:
        if (root / name).exists():
            place(root / name, dest / name, link)
            copied[name] = str(root / name)

    places = [root, src, root.parent]
    text = next((p for d in places for p in _text_candidates(d, release) if p.exists()), None)
    if text is None:
        hits = sorted(src.rglob(f"{release}-raw-text.jsonl"))
        text = hits[0] if hits else None
    if text is not None:
        rel = f"raw-data/{release}-raw-text.jsonl"
        place(text, dest / rel, link)
        copied[rel] = str(text)
    else:
        notes.append(f"no {release}-raw-text.jsonl under {src}; node texts will be absent")

    images: dict[str, Any] = {}
    img_dir = next((p for d in places for p in _image_dir_candidates(d, release) if p.is_dir()), None)
    tar = next((p for d in places for p in (d / "raw-data" / f"{release}-images.tar", d / f"{release}-images.tar")
                if p.exists()), None)
    if img_dir is not None:
        index = image_index(img_dir)
        for p in index.values():
            place(p, dest / "images" / p.relative_to(img_dir), link)
        images = {"from": str(img_dir), "count": len(index)}
    elif tar is not None:
        images = {"from": str(tar), "count": _extract_images(tar, dest / "images", notes), "extracted": True}
    else:
        notes.append(f"no images/ folder or {release}-images.tar under {src}; raw images will be absent")

    ds = load_mm_graph_from(card, dest, verify=verify)
    return {"task": card.name, "prepared_at": utc_now(), "source": str(src.resolve()), "linked": link,
            "stats": ds.stats(), "notes": notes + ds.notes, "images": images,
            "features": {k: {"shape": list(v.values.shape), "coverage": float(v.present.float().mean())}
                         for k, v in ds.graph.features.items()},
            "files": {k: {"from": v, "sha256": file_sha256(dest / k)} for k, v in sorted(copied.items())}}
