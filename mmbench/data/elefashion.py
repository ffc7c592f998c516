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

from pathlib import Path

import torch

from mmbench.api import FeatureSet
from mmbench.data import register_loader
from mmbench.data.common import (  # noqa: F401
    apply_class_split,
    class_split,
    dataset_dir,
    missing_data_message,
    undirected,
    verify_expected,
)
from mmbench.data.elefashion_files import (
    EDGE_TYPE,
    EDGES_FILE,
    FEATURE_SUFFIX,
    LABELS_FILE,
    MAPPING_FILE,
    REQUIRED,
    SPLIT_FILE,
    _class_names,
    _image_dir_candidates,
    _release,
    _text_candidates,
    image_index,
    read_edges,
    read_features,
    read_labels,
    read_node_mapping,
    read_split,
    read_texts,
)
from mmbench.data.graph import GraphTaskData, MultimodalGraph
from mmbench.errors import ConfigError, DataError
from mmbench.tasks import TaskCard


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
