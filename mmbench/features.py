"""Node feature matrices for feature-based node classifiers (MLP, GCN, GraphSAGE, GAT, ...).

``node_features(graph, spec)`` turns a ``MultimodalGraph`` into one (N, D) float matrix:

  ``text``          MiniLM sentence embeddings of the node texts, L2-normalised; missing text -> zeros
  ``image``         EfficientNet-Lite0 image features (mean over the 7x7 grid), L2-normalised;
                    missing or unreadable image -> zeros
  ``text+image``    (also ``default``) [text ; image ; has_text ; has_image]: both blocks as above plus
                    two 0/1 presence columns, so a model can tell "no image" from "an image whose
                    features happen to be small"
  any other name    a precomputed ``FeatureSet`` of the graph (e.g. ``clip`` for Ele-fashion), pooled to
                    (N, D) as stored (absent rows are zeros, as the loader wrote them)

The encoders are frozen and their outputs are cached on disk by ``mmbench.backbones.encode_texts`` /
``encode_images`` (keyed by encoder and content), so a second call never re-encodes. When no node has an
image the image encoder is not loaded at all (the block is zeros). Note that ``encode_images`` holds the
(N, 49, 1280) patch grid in memory while encoding, about 250 KB per node: fine for thousands of nodes,
not for Ele-fashion's 97,766 (its presets use the precomputed ``clip`` features instead).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mmbench.errors import ConfigError

ENCODED_SPECS = ("text", "image", "text+image", "default")


def _text_block(graph: Any, encoder: str, device: Any = None, progress: Any = None) -> tuple[torch.Tensor,
                                                                                            torch.Tensor]:
    from mmbench.backbones import encode_texts

    values, present = encode_texts(list(graph.texts), encoder, device=device, progress=progress)
    return F.normalize(values.float(), dim=1), present.bool()


def _image_block(graph: Any, encoder: str, device: Any = None, progress: Any = None) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
    from mmbench.backbones import encode_images

    images = list(graph.images)
    if not any(images):  # e.g. Ele-fashion without its image archive: skip loading the encoder
        return torch.zeros(graph.num_nodes, 1280), torch.zeros(graph.num_nodes, dtype=torch.bool)
    values, present = encode_images(images, encoder, device=device, progress=progress)
    return F.normalize(values.float(), dim=1), present.bool()


def _share(present: torch.Tensor) -> float:
    return round(float(present.float().mean()), 4) if present.numel() else 0.0


def node_features(graph: Any, spec: str = "text+image", text_encoder: str = "minilm",
                  image_encoder: str = "efficientnet-lite0", device: Any = None,
                  progress: Any = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """-> X (N, D) float32 on the CPU, info (JSON-able: spec, dim, column blocks, per-modality coverage, sources).

    ``device`` runs the encoders there (outputs are cached on the CPU); ``progress`` shows encoding bars.

    ``info["blocks"]`` maps each block name to its [start, end) column range in X.
    """
    n = graph.num_nodes
    if spec in ENCODED_SPECS:
        parts: list[tuple[str, torch.Tensor]] = []
        coverage: dict[str, float] = {}
        sources: dict[str, str] = {}
        want_text = spec in ("text", "text+image", "default")
        want_image = spec in ("image", "text+image", "default")
        if want_text:
            t, t_present = _text_block(graph, text_encoder, device, progress)
            parts.append(("text", t))
            coverage["text"], sources["text"] = _share(t_present), text_encoder
        if want_image:
            v, v_present = _image_block(graph, image_encoder, device, progress)
            parts.append(("image", v))
            coverage["image"], sources["image"] = _share(v_present), image_encoder
        if want_text and want_image:
            parts += [("has_text", t_present.float()[:, None]), ("has_image", v_present.float()[:, None])]
        spec_name = "text+image" if spec == "default" else spec
    elif spec in graph.features:
        fs = graph.features[spec]
        parts = [(spec, fs.pooled().float())]
        coverage = {spec: _share(fs.present)}
        sources = {spec: fs.source or "precomputed"}
        spec_name = spec
    else:
        known = list(ENCODED_SPECS[:3]) + sorted(graph.features)
        raise ConfigError(f"unknown node feature spec {spec!r}; this graph offers: {', '.join(known)}")
    blocks: dict[str, list[int]] = {}
    start = 0
    for name, block in parts:
        blocks[name] = [start, start + block.shape[1]]
        start += block.shape[1]
    x = torch.cat([b for _, b in parts], 1).contiguous() if parts else torch.zeros(n, 0)
    info = {"spec": spec_name, "dim": int(x.shape[1]), "blocks": blocks, "coverage": coverage, "sources": sources}
    return x, info
