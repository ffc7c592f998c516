"""mmbench.features.node_features: encoded blocks, presence columns, precomputed sets, the on-disk cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES

import mmbench.backbones as backbones
from mmbench.api import FeatureSet
from mmbench.data.graph import MultimodalGraph
from mmbench.errors import ConfigError
from mmbench.features import node_features

IMAGES = FIXTURES / "byo-graph" / "images"


def graph(texts, images, features=None) -> MultimodalGraph:
    n = len(texts)
    return MultimodalGraph(num_nodes=n, texts=tuple(texts), images=tuple(images), kinds=("node",) * n,
                           edge_index=torch.zeros(2, 0, dtype=torch.long), edge_type=torch.zeros(0, dtype=torch.long),
                           features=features or {})


@pytest.fixture
def five(tmp_path) -> MultimodalGraph:
    """Text missing for nodes 1 (None) and 3 (blank); image missing for 2, 4 and 3 (file does not exist)."""
    return graph(["leather ankle boot", None, "canvas tote bag", "   ", "hiking boot"],
                 [str(IMAGES / "p1.png"), str(IMAGES / "p6.png"), None, str(tmp_path / "nope.png"), None])


def test_text_image_blocks_and_presence(five):
    x, info = node_features(five, "text+image")
    assert x.shape == (5, 384 + 1280 + 2) and x.dtype == torch.float32
    assert info["spec"] == "text+image" and info["dim"] == 1666
    assert info["blocks"] == {"text": [0, 384], "image": [384, 1664], "has_text": [1664, 1665],
                              "has_image": [1665, 1666]}
    assert info["coverage"] == {"text": 0.6, "image": 0.4}
    assert x[:, 1664].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert x[:, 1665].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    # each block L2-normalised where present, zeros where missing
    assert torch.allclose(x[:, :384].norm(dim=1), torch.tensor([1.0, 0, 1, 0, 1]), atol=1e-5)
    assert torch.allclose(x[:, 384:1664].norm(dim=1), torch.tensor([1.0, 1, 0, 0, 0]), atol=1e-5)
    # the two images differ, and MiniLM puts the two boots closer than a boot and a bag
    assert not torch.allclose(x[0, 384:1664], x[1, 384:1664])
    t = x[:, :384]
    assert float(t[0] @ t[4]) > float(t[0] @ t[2]) + 0.1

    text, tinfo = node_features(five, "text")
    image, iinfo = node_features(five, "image")
    assert text.shape == (5, 384) and image.shape == (5, 1280)
    assert tinfo["blocks"] == {"text": [0, 384]} and iinfo["coverage"] == {"image": 0.4}
    assert torch.equal(text, x[:, :384]) and torch.equal(image, x[:, 384:1664])
    assert text.shape != x.shape and x[:, 384:].abs().sum() > 0  # the ablation really drops the image half
    default, dinfo = node_features(five, "default")
    assert torch.equal(default, x) and dinfo["spec"] == "text+image"


def test_encoders_run_once(five, env, monkeypatch):
    first, _ = node_features(five, "text+image")

    def boom(*a, **k):
        raise AssertionError("re-encoded")

    monkeypatch.setattr(backbones, "image_encoder", boom)
    monkeypatch.setattr("transformers.AutoModel.from_pretrained", boom)
    again, _ = node_features(five, "text+image")
    assert torch.equal(first, again)
    assert len(list((env.cache / "text-embeddings").glob("*.pt"))) == 1
    assert len(list((env.cache / "image-pooled").glob("*.pt"))) == 1


def test_no_images_at_all_skips_the_image_encoder(monkeypatch):
    monkeypatch.setattr(backbones, "image_encoder", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    x, info = node_features(graph(["a red scarf", "a blue hat"], [None, None]), "text+image")
    assert x.shape == (2, 1666) and x[:, 384:1664].abs().sum() == 0 and x[:, 1665].sum() == 0
    assert x[:, 1664].tolist() == [1.0, 1.0] and info["coverage"]["image"] == 0.0


def test_precomputed_feature_sets():
    clip = torch.arange(12.0).view(3, 4)
    patches = torch.arange(24.0).view(3, 2, 4)
    present = torch.tensor([True, False, True])
    g = graph([None] * 3, [None] * 3, {"clip": FeatureSet(clip, present, "clip-vit"),
                                       "grid": FeatureSet(patches, present)})
    x, info = node_features(g, "clip")
    assert torch.equal(x, clip)
    assert info == {"spec": "clip", "dim": 4, "blocks": {"clip": [0, 4]}, "coverage": {"clip": 0.6667},
                    "sources": {"clip": "clip-vit"}}
    grid, _ = node_features(g, "grid")
    assert torch.equal(grid, patches.mean(1))
    with pytest.raises(ConfigError, match="unknown node feature spec 'clipp'; this graph offers: text, image, "
                                          "text\\+image, clip, grid"):
        node_features(g, "clipp")
    assert F.normalize(x, dim=1).shape == (3, 4)
