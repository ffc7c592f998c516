"""mmbench.features.node_features: encoded blocks, presence columns, precomputed sets, the on-disk cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES

import mmbench.backbones_vision as backbones_vision
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

    monkeypatch.setattr(backbones_vision, "vision_encoder", boom)  # what encode_images loads
    monkeypatch.setattr("transformers.AutoModel.from_pretrained", boom)
    again, _ = node_features(five, "text+image")
    assert torch.equal(first, again)
    assert len(list((env.cache / "text-embeddings").glob("*.pt"))) == 1
    assert len(list((env.cache / "image-pooled").glob("*.pt"))) == 1


def test_no_image_graph_default_features_have_no_image_block(monkeypatch):
    """A text-only graph gets the text block alone by default: no 1,280 zero columns, no presence columns, the
    image encoder never loaded, and the info says what was left out."""
    def never(*a, **k):
        raise AssertionError("loaded")

    monkeypatch.setattr(backbones_vision, "vision_encoder", never)
    g = graph(["a red scarf", "a blue hat"], [None, None])
    for spec in ("text+image", "default"):
        x, info = node_features(g, spec)
        assert x.shape == (2, 384) and info["dim"] == 384 and info["spec"] == "text+image"
        assert info["blocks"] == {"text": [0, 384]} and info["dropped"] == {"image": "no node has an image"}
        assert "image" not in info["coverage"]
    text, _ = node_features(g, "text")
    assert torch.equal(x, text)
    x, info = node_features(g, "tfidf+image", train_nodes=torch.tensor([0, 1]))
    assert set(info["blocks"]) == {"tfidf"} and info["dropped"] == {"image": "no node has an image"}
    with pytest.raises(ConfigError, match="no block is left for this graph .image: no node has an image"):
        node_features(g, "image")


def test_unreadable_images_only_are_dropped_too(tmp_path):
    g = graph(["a red scarf", "a blue hat"], [str(tmp_path / "gone.png"), None])
    x, info = node_features(g, "text+image")
    assert x.shape == (2, 384) and info["dropped"] == {"image": "no node's image could be read"}


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


# --------------------------------------------------------------------------- tfidf
def test_tfidf_vocabulary_and_idf_come_from_training_nodes_only():
    import math

    import scipy.sparse as sp

    from mmbench.tfidf import fit_tfidf

    texts = ["red boot red", "blue boot", "green scarf", None, "zebra boot", "zebra quokka"]
    g = graph(texts, [None] * 6)
    train = torch.tensor([0, 1, 2, 3])            # nodes 4 and 5 (zebra, quokka) are valid/test nodes
    vec, fitted_on = fit_tfidf(texts, train)
    assert fitted_on == 3 and sorted(vec.vocabulary_) == ["blue", "boot", "green", "red", "scarf"]
    x, info = node_features(g, "tfidf", train_nodes=train)
    assert x.shape == (6, 5) and x.dtype == torch.float32 and info["tfidf"]["vocabulary"] == 5
    assert info["blocks"] == {"tfidf": [0, 5]} and info["coverage"] == {"tfidf": round(4 / 6, 4)}
    col = vec.vocabulary_
    # smoothed IDF over the 3 training documents only: boot is in 2 of them (test node 4 does not count)
    assert math.isclose(vec.idf_[col["boot"]], math.log(4 / 3) + 1, rel_tol=1e-6)
    assert math.isclose(vec.idf_[col["red"]], math.log(4 / 2) + 1, rel_tol=1e-6)
    # test node 4 "zebra boot": only the known word remains, L2-normalised
    assert x[4].nonzero().flatten().tolist() == [col["boot"]] and math.isclose(float(x[4, col["boot"]]), 1.0)
    assert not x[5].any() and not x[3].any()      # only unknown words / no text: zero rows
    # fitting on all nodes would have put the test words in (the check above can fail)
    assert "zebra" in fit_tfidf(texts, torch.arange(6))[0].vocabulary_
    # tfidf:N keeps the N most frequent training terms; sparse=True keeps the CSR matrix
    capped, cinfo = node_features(g, "tfidf:2", train_nodes=train, sparse=True)
    assert sp.issparse(capped) and capped.shape == (6, 2) and cinfo["tfidf"]["max_features"] == 2
    assert sorted(fit_tfidf(texts, train, 2)[0].vocabulary_) == ["boot", "red"]
    with pytest.raises(ConfigError, match="needs the training nodes"):
        node_features(g, "tfidf")


def test_tfidf_next_to_encoders_and_spec_errors(five, monkeypatch):
    import scipy.sparse as sp

    import mmbench.features as features

    train = torch.tensor([0, 2, 4])
    full, _ = node_features(five, "text+image")
    x, info = node_features(five, "tfidf+text+image", train_nodes=train)
    v = info["tfidf"]["vocabulary"]       # leather ankle boot canvas tote bag hiking
    assert v == 7 and info["blocks"] == {"tfidf": [0, v], "text": [v, v + 384], "image": [v + 384, v + 1664],
                                         "has_text": [v + 1664, v + 1665], "has_image": [v + 1665, v + 1666]}
    assert torch.equal(x[:, v:], full)
    s, _ = node_features(five, "tfidf+text+image", train_nodes=train, sparse=True)
    assert sp.issparse(s) and torch.allclose(torch.from_numpy(s.toarray()), x)
    dense, _ = node_features(five, "text", sparse=True)   # no tfidf block: stays a dense tensor
    assert isinstance(dense, torch.Tensor)
    t2, tinfo = node_features(five, "tfidf+image", train_nodes=train)
    assert list(tinfo["blocks"]) == ["tfidf", "image", "has_text", "has_image"]
    assert t2[:, -2].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
    for bad, msg in (("tfidf+words", "unknown node feature block 'words' in spec 'tfidf\\+words'; this graph "
                                     "offers: text, image, text\\+image, tfidf, tfidf:N"),
                     ("tfidf:0", "tfidf:N with an integer N >= 1"), ("tfidf:x", "tfidf:N with an integer"),
                     ("text+text", "a block is named twice"), ("tfidf+tfidf:3", "a block is named twice")):
        with pytest.raises(ConfigError, match=msg):
            node_features(five, bad, train_nodes=train)
    monkeypatch.setattr(features, "DENSE_LIMIT_BYTES", 100)
    with pytest.raises(ConfigError, match="cap the vocabulary, e.g. features=tfidf:4096"):
        node_features(five, "tfidf", train_nodes=train)
    assert sp.issparse(node_features(five, "tfidf", train_nodes=train, sparse=True)[0])  # sparse: no limit
