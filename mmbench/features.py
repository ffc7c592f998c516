"""Node feature matrices for feature-based node classifiers (MLP, GCN, GraphSAGE, GAT, R-GCN, logreg, SGC).

``node_features(graph, spec, ..., train_nodes=...)`` turns a ``MultimodalGraph`` into one (N, D) float matrix.
A spec is one block name or several joined by ``+`` (their columns side by side, in the order written):

  ``text``          MiniLM sentence embeddings of the node texts, L2-normalised; missing text -> zeros
  ``image``         EfficientNet-Lite0 image features (mean over the 7x7 grid), L2-normalised;
                    missing or unreadable image -> zeros
  ``tfidf``         bag of words: TF-IDF over the node texts with the vocabulary and IDF fitted on the
                    training nodes' texts only (``mmbench.tfidf``); ``tfidf:N`` keeps the N most frequent
                    training terms (scikit-learn's ``max_features``)
  any other name    a precomputed ``FeatureSet`` of the graph (e.g. ``clip`` for Ele-fashion), pooled to
                    (N, D) as stored (absent rows are zeros, as the loader wrote them)
  ``text+image``    (also ``default``, the models' default) [text ; image ; has_text ; has_image]

Presence columns: a spec with the ``image`` block and a text block (``text`` or ``tfidf``) ends with two 0/1
columns ``has_text``, ``has_image``, so a model can tell "no image" from "an image whose features happen to be
small" (``tfidf+text+image`` = [tfidf ; text ; image ; has_text ; has_image]).

Blocks that fit the graph: a block no node can fill is left out rather than added as all-zero columns, and
``info["dropped"]`` says which and why: ``image`` when no node has an image (the image encoder is then not
loaded at all) or none could be read, ``text``/``tfidf`` when no node has a text. So on a text-only graph the
default ``text+image`` is the text block alone (384 columns, not 384 + 1,280 zeros + 2). A spec with nothing
left is refused. ``info["blocks"]`` maps each block used to its [start, end) column range.

Dense or sparse: GNNs get a dense (N, D) torch tensor (a TF-IDF block is densified; a dense matrix over
2 GiB is refused with a hint to cap the vocabulary with ``tfidf:N``); ``sparse=True`` (logreg, SGC) returns a
scipy CSR matrix whenever the spec has a TF-IDF block (the frozen-encoder blocks are stored in it as they
are), and the dense tensor otherwise.

The encoders are frozen and their outputs are cached on disk by ``mmbench.backbones.encode_texts`` /
``encode_images`` (keyed by encoder and content), so a second call never re-encodes. Note that ``encode_images``
holds the (N, 49, 1280) patch grid in memory while encoding, about 250 KB per node: fine for thousands of
nodes, not for Ele-fashion's 97,766 (its presets use the precomputed ``clip`` features instead).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from mmbench.errors import ConfigError

ENCODED_SPECS = ("text", "image", "text+image", "default")
DENSE_LIMIT_BYTES = 2 << 30     # a densified TF-IDF matrix above this is refused (use tfidf:N)


def _text_block(graph: Any, encoder: str, device: Any = None, progress: Any = None) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    from mmbench.backbones import encode_texts

    values, present = encode_texts(list(graph.texts), encoder, device=device, progress=progress)
    return F.normalize(values.float(), dim=1), present.bool()


def _image_block(graph: Any, encoder: str, device: Any = None, progress: Any = None) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    from mmbench.backbones import encode_images

    values, present = encode_images(list(graph.images), encoder, device=device, progress=progress)
    return F.normalize(values.float(), dim=1), present.bool()


def _share(present: torch.Tensor) -> float:
    return round(float(present.float().mean()), 4) if present.numel() else 0.0


def _has_text(graph: Any) -> torch.Tensor:
    return torch.tensor([t is not None and bool(t.strip()) for t in graph.texts], dtype=torch.bool)


def parse_spec(spec: str, graph: Any) -> list[str]:
    """``"tfidf:500+text"`` -> ``["tfidf:500", "text"]`` (``default`` = ``text+image``); unknown blocks, repeats
    and malformed ``tfidf:N`` are refused with what this graph offers."""
    parts = ["text", "image"] if spec == "default" else [p.strip() for p in str(spec).split("+")]
    known = ", ".join(["text", "image", "text+image", *sorted(graph.features), "tfidf", "tfidf:N"])
    hint = f"this graph offers: {known}, and '+'-joined combinations such as tfidf+text+image"
    for part in parts:
        if part.startswith("tfidf:"):
            n = part.split(":", 1)[1]
            if not n.isdigit() or int(n) < 1:
                raise ConfigError(f"node feature spec {spec!r}: {part!r} must be tfidf:N with an integer N >= 1 "
                                  f"(the N most frequent training terms)")
        elif part not in ("text", "image", "tfidf") and part not in graph.features:
            what = f"block {part!r} in spec" if len(parts) > 1 else "spec"
            raise ConfigError(f"unknown node feature {what} {spec!r}; {hint}")
    kinds = ["tfidf" if p.startswith("tfidf") else p for p in parts]
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"node feature spec {spec!r}: a block is named twice")
    return parts


def node_features(graph: Any, spec: str = "text+image", text_encoder: str = "minilm",
                  image_encoder: str = "efficientnet-lite0", device: Any = None, progress: Any = None,
                  train_nodes: torch.Tensor | None = None,
                  sparse: bool = False) -> tuple[torch.Tensor | sp.csr_matrix, dict[str, Any]]:
    """-> X (N, D) float32 on the CPU, info (JSON-able: spec, dim, column blocks, per-block coverage, sources,
    and ``dropped`` / ``tfidf`` where they apply).

    ``device`` runs the encoders there (outputs are cached on the CPU); ``progress`` shows encoding bars;
    ``train_nodes`` (n,) are the nodes a TF-IDF block is fitted on (required for ``tfidf``); ``sparse``: return
    a scipy CSR matrix when the spec has a TF-IDF block (module docstring).

    ``info["blocks"]`` maps each block name to its [start, end) column range in X.
    """
    n = graph.num_nodes
    parts = parse_spec(spec, graph)
    blocks_in: list[tuple[str, torch.Tensor | sp.csr_matrix]] = []
    coverage: dict[str, float] = {}
    sources: dict[str, str] = {}
    dropped: dict[str, str] = {}
    extra: dict[str, Any] = {}
    text_present = _has_text(graph)
    image_present: torch.Tensor | None = None
    for part in parts:
        if part in ("text", "tfidf") or part.startswith("tfidf:"):
            name = "tfidf" if part.startswith("tfidf") else "text"
            if not bool(text_present.any()):
                dropped[name] = "no node has a text"
                continue
            if name == "text":
                block, text_present = _text_block(graph, text_encoder, device, progress)
                sources["text"] = text_encoder
            else:
                if train_nodes is None:
                    raise ConfigError(f"node feature spec {spec!r}: tfidf needs the training nodes to fit its "
                                      f"vocabulary on (train_nodes)")
                from mmbench.tfidf import tfidf_matrix

                cap = int(part.split(":", 1)[1]) if ":" in part else None
                block, extra["tfidf"] = tfidf_matrix(graph.texts, train_nodes, cap)
                sources["tfidf"] = "tfidf (vocabulary and IDF of the training nodes' texts)"
            present = text_present if name == "text" else torch.from_numpy(block.getnnz(axis=1) > 0)
            coverage[name] = _share(present)
            blocks_in.append((name, block))
        elif part == "image":
            if not any(graph.images):   # e.g. a text-only graph: the image encoder is not even loaded
                dropped["image"] = "no node has an image"
                continue
            block, image_present = _image_block(graph, image_encoder, device, progress)
            if not bool(image_present.any()):
                dropped["image"] = "no node's image could be read"
                image_present = None
                continue
            coverage["image"], sources["image"] = _share(image_present), image_encoder
            blocks_in.append(("image", block))
        else:
            fs = graph.features[part]
            blocks_in.append((part, fs.pooled().float()))
            coverage[part], sources[part] = _share(fs.present), fs.source or "precomputed"
    if not blocks_in:
        why = "; ".join(f"{k}: {v}" for k, v in dropped.items())
        raise ConfigError(f"node feature spec {spec!r}: no block is left for this graph ({why})")
    names = [b for b, _ in blocks_in]
    if image_present is not None and ("text" in names or "tfidf" in names):
        blocks_in += [("has_text", text_present.float()[:, None]), ("has_image", image_present.float()[:, None])]
    blocks: dict[str, list[int]] = {}
    start = 0
    for name, block in blocks_in:
        blocks[name] = [start, start + block.shape[1]]
        start += block.shape[1]
    if sparse and "tfidf" in blocks:
        x: torch.Tensor | sp.csr_matrix = sp.hstack(
            [b if sp.issparse(b) else sp.csr_matrix(b.numpy()) for _, b in blocks_in], format="csr", dtype=np.float32)
    else:
        if "tfidf" in blocks and n * start * 4 > DENSE_LIMIT_BYTES:
            raise ConfigError(f"node feature spec {spec!r}: a dense ({n:,} x {start:,}) matrix needs "
                              f"{n * start * 4 / 2**30:.1f} GiB; cap the vocabulary, e.g. features=tfidf:4096")
        x = torch.cat([torch.from_numpy(b.toarray()) if sp.issparse(b) else b for _, b in blocks_in], 1).contiguous()
    spec_name = "text+image" if spec == "default" else spec
    info: dict[str, Any] = {"spec": spec_name, "dim": int(start), "blocks": blocks, "coverage": coverage,
                            "sources": sources}
    if dropped:
        info["dropped"] = dropped
    info.update(extra)
    return x, info
