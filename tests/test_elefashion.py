"""Ele-fashion (MM-GRAPH layout): loader, tolerant readers, zero-shot class split, prepare, CLI listing."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
from conftest import FIXTURES, card_raw, copy_fixture, write_card

from mmbench.cli import main
from mmbench.data import load_task_data, prepare_task_data
from mmbench.data.elefashion import EDGE_TYPE, class_split
from mmbench.errors import ConfigError, DataError
from mmbench.tasks import get_card, load_card

FIXTURE_STATS = {"nodes": 60, "classes": 11}
MISSING = [5, 17, 33, 48]
NO_TEXT = [4, 11, 13, 29]
PT_FILES = ["clip_feat.pt", "imagebind_feat.pt", "labels-w-missing.pt", "nc_edges-nodeid.pt", "node_mapping.pt",
            "split.pt", "t5dino_feat.pt"]


def fixture_card(tmp_path, name="ele-fashion", **dataset):
    raw = card_raw(name)
    raw["dataset"]["expected"] = dict(FIXTURE_STATS)
    raw["dataset"].update(dataset)
    return load_card(write_card(tmp_path / "cards", raw))


@pytest.fixture
def installed(install_fixture):
    return install_fixture("ele-fashion")


def edge_set(ei):
    return set(map(tuple, ei.t().tolist()))


def test_fixture_loads_verified(tmp_path, installed):
    ds = load_task_data(fixture_card(tmp_path), verify=True)
    g = ds.graph
    assert ds.verified
    assert ds.stats() == {"nodes": 60, "edges": 180, "with_text": 56, "with_image": 6,
                          "train": 31, "valid": 12, "test": 11, "classes": 11}
    assert g.class_names == tuple(f"class_{i}" for i in range(11))
    assert g.kinds == ("product",) * 60
    # labels: -1 where missing; never in a split
    assert (g.labels == -1).nonzero().reshape(-1).tolist() == MISSING
    for s in ("train", "valid", "test"):
        assert (g.labels[g.splits[s]] >= 0).all()
    assert "train: excluded 3 node(s) whose label is missing in labels-w-missing.pt" in ds.notes
    assert "test: excluded 1 node(s) whose label is missing in labels-w-missing.pt" in ds.notes
    stored = torch.load(FIXTURES / "ele-fashion" / "split.pt")
    assert set(g.splits["train"].tolist()) == set(stored["train_idx"].tolist()) - set(MISSING)
    assert set(g.splits["valid"].tolist()) == set(stored["val_idx"].tolist())
    # edges: single type, both directions, no self-loop, each once
    assert g.edge_type_names == (EDGE_TYPE,) and int(g.edge_type.max()) == 0
    edges = edge_set(g.edge_index)
    assert len(edges) == 180 and all((b, a) in edges for a, b in edges)
    assert not any(a == b for a, b in edges)
    raw = torch.load(FIXTURES / "ele-fashion" / "nc_edges-nodeid.pt")
    assert {tuple(e) for e in raw.tolist() if e[0] != e[1]} <= edges
    assert "nc_edges-nodeid.pt: dropped 1 self-loop(s)" in ds.notes
    # features: every *_feat.pt present, masks from all-zero / NaN rows
    assert sorted(g.features) == ["clip", "imagebind", "t5dino"]
    assert (~g.features["clip"].present).nonzero().reshape(-1).tolist() == [7, 21]
    ib = g.features["imagebind"]
    assert (~ib.present).nonzero().reshape(-1).tolist() == [9]
    assert torch.isfinite(ib.values).all() and ib.values.dtype == torch.float16 and not ib.values[9].any()
    assert bool(g.features["t5dino"].present.all()) and g.features["clip"].values.shape == (60, 8)
    # texts by asin through node_mapping; images by asin or node id
    assert [i for i, t in enumerate(g.texts) if t is None] == NO_TEXT
    assert g.texts[0].endswith("item 0 of class 0")
    assert [i for i, p in enumerate(g.images) if p] == [0, 1, 2, 3, 10, 20]
    assert g.images[1].endswith("images/B00FX00001.png") and g.images[20].endswith("images/20.png")
    assert g.meta["raw_ids"][7] == "B00FX00007"
    assert g.meta["train_classes"] == g.meta["candidate_classes"] == tuple(range(11))
    sample = ds.assemble(0)
    assert sample.nodes[0].text == g.texts[0] and sample.edge_type_names == (EDGE_TYPE,)


def test_published_counts_stop_the_fixture(installed):
    card = get_card("ele-fashion")
    with pytest.raises(DataError) as e:
        load_task_data(card, verify=True)
    assert "nodes: found 60, published 97,766" in str(e.value) and "--unverified-data" in str(e.value)
    ds = load_task_data(card, verify=False)
    assert not ds.verified and any("published 97,766" in n for n in ds.notes)


def test_zero_shot_split(tmp_path, installed):
    sup = load_task_data(fixture_card(tmp_path), verify=True).graph
    zs_card = fixture_card(tmp_path, name="ele-fashion-zs")
    ds = load_task_data(zs_card, verify=True)
    g = ds.graph
    assert g.meta["train_classes"] == (0, 1, 2, 3, 4, 5)
    assert g.meta["candidate_classes"] == (6, 7, 8, 9, 10)
    assert set(g.labels[g.splits["train"]].tolist()) <= {0, 1, 2, 3, 4, 5}
    for s in ("valid", "test"):
        assert set(g.labels[g.splits[s]].tolist()) <= {6, 7, 8, 9, 10}
        assert g.splits[s].numel() > 0
    # exactly the supervised split nodes of those classes
    for s, classes in (("train", range(6)), ("valid", range(6, 11)), ("test", range(6, 11))):
        want = [v for v in sup.splits[s].tolist() if int(sup.labels[v]) in classes]
        assert g.splits[s].tolist() == want
    assert any(n.startswith("zero-shot split: train keeps 15 of 31 nodes") for n in ds.notes)
    # the helper agrees with what the loader stored (idempotent), for both cards
    train, valid, test, train_classes, candidates = class_split(zs_card, g)
    assert torch.equal(train, g.splits["train"]) and torch.equal(test, g.splits["test"])
    assert (train_classes, candidates) == ((0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10))
    train, valid, test, train_classes, candidates = class_split(fixture_card(tmp_path), sup)
    assert train_classes == candidates == tuple(range(11))
    assert torch.equal(valid, sup.splits["valid"])
    assert ds.data_hash() != load_task_data(fixture_card(tmp_path)).data_hash()


def test_zero_shot_by_class_name_and_bad_configs(tmp_path, installed):
    g = load_task_data(fixture_card(tmp_path), verify=True).graph
    raw = card_raw("ele-fashion-zs")
    raw["protocol"]["zero_shot"] = {"seen_classes": ["class_0", "class_1"], "unseen_classes": ["class_2"]}
    card = load_card(write_card(tmp_path / "zs", raw))
    assert class_split(card, g)[3:] == ((0, 1), (2,))
    for zs, needle in (({"seen_classes": [0, 1], "unseen_classes": [1, 2]}, "are both seen and unseen"),
                       ({"seen_classes": ["class_O"], "unseen_classes": [2]}, "unknown class 'class_O'. Did you mean"),
                       ({"seen_classes": [11], "unseen_classes": [2]}, "outside 0..10"),
                       ({"seen_classes": [0]}, "unseen_classes must be a non-empty list"),
                       ({"seen": [0], "unseen_classes": [2]}, "unknown key(s) seen")):
        raw["protocol"]["zero_shot"] = zs
        card = load_card(write_card(tmp_path / "zs", raw))
        with pytest.raises(ConfigError, match="protocol.zero_shot") as e:
            class_split(card, g)
        assert needle in str(e.value)


def test_missing_data_names_the_prepare_command(env):
    with pytest.raises(DataError) as e:
        load_task_data(get_card("ele-fashion-zs"))
    msg = str(e.value)
    assert "mmbench data prepare ele-fashion-zs --from" in msg and str(env.data / "ele-fashion") in msg
    with pytest.raises(DataError, match="mmbench data prepare ele-fashion --from"):
        load_task_data(get_card("ele-fashion"))


def test_list_tasks_shows_ele_fashion_missing_then_ready(capsys, install_fixture):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    for name in ("ele-fashion", "ele-fashion-zs"):
        assert lines[name].split()[1:3] == ["classification", "missing"], lines[name]
        assert f"not prepared (run: mmbench data prepare {name} --from DIR)" in out
    install_fixture("ele-fashion")
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert lines["ele-fashion"].split()[2] == lines["ele-fashion-zs"].split()[2] == "ready"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_from_a_flat_folder(env, tmp_path):
    src = copy_fixture("ele-fashion", tmp_path / "download")
    card = fixture_card(tmp_path)
    manifest = prepare_task_data(card, src)
    dest = env.data / "ele-fashion"
    assert sorted(manifest["files"]) == sorted(PT_FILES + ["raw-data/ele-fashion-raw-text.jsonl"])
    for rel, entry in manifest["files"].items():
        assert (dest / rel).is_file() and not (dest / rel).is_symlink()
        assert entry["sha256"] == sha256(dest / rel) == sha256(FIXTURES / "ele-fashion" / rel)
        assert entry["from"] == str(src / rel)
    assert manifest["images"] == {"from": str(src / "images"), "count": 6}
    assert sorted(p.name for p in (dest / "images").iterdir()) == sorted(
        p.name for p in (FIXTURES / "ele-fashion" / "images").iterdir())
    assert manifest["stats"]["nodes"] == 60 and manifest["stats"]["classes"] == 11
    assert manifest["features"]["clip"] == {"shape": [60, 8], "coverage": pytest.approx(58 / 60)}
    assert json.loads((dest / "MANIFEST.json").read_text()) == manifest
    assert not (dest / "make_fixture.py").exists()
    assert load_task_data(card, verify=True).stats()["with_image"] == 6


def test_prepare_from_the_hub_layout_with_an_image_tar(env, tmp_path):
    """huggingface-cli download: <root>/ele-fashion/*.pt, <root>/raw-data/{jsonl, images.tar}."""
    hub = tmp_path / "mm-graph"
    (hub / "ele-fashion").mkdir(parents=True)
    for name in PT_FILES:
        shutil.copy(FIXTURES / "ele-fashion" / name, hub / "ele-fashion" / name)
    shutil.copytree(FIXTURES / "ele-fashion" / "raw-data", hub / "raw-data")
    with tarfile.open(hub / "raw-data" / "ele-fashion-images.tar", "w") as tar:
        tar.add(FIXTURES / "ele-fashion" / "images", arcname="ele-fashion-images")
    (hub / "books-nc").mkdir()  # another dataset of the download is left alone
    manifest = prepare_task_data(fixture_card(tmp_path), hub, link=True)
    dest = env.data / "ele-fashion"
    assert manifest["files"]["split.pt"]["from"] == str(hub / "ele-fashion" / "split.pt")
    assert manifest["files"]["raw-data/ele-fashion-raw-text.jsonl"]["from"] == str(
        hub / "raw-data" / "ele-fashion-raw-text.jsonl")
    assert (dest / "split.pt").is_symlink()
    assert manifest["images"]["count"] == 6 and manifest["images"]["extracted"] is True
    assert (dest / "images" / "B00FX00010.png").read_bytes() == (
        FIXTURES / "ele-fashion" / "images" / "B00FX00010.png").read_bytes()


def test_prepare_checks_the_published_counts(env, tmp_path):
    src = copy_fixture("ele-fashion", tmp_path / "download")
    with pytest.raises(DataError, match="nodes: found 60, published 97,766"):
        prepare_task_data(get_card("ele-fashion"), src)
    assert not (env.data / "ele-fashion").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="found no labels-w-missing.pt"):
        prepare_task_data(get_card("ele-fashion"), empty)


def test_tolerates_the_plausible_file_variants(tmp_path, installed):
    """(2, E) edges, float labels with NaN, boolean split masks, list node_mapping, numpy features,
    jsonl rows keyed by asin with raw_text lists or title/description."""
    card = fixture_card(tmp_path)
    base = load_task_data(card, verify=True).graph
    d = installed
    edges = torch.load(d / "nc_edges-nodeid.pt")
    torch.save(edges.t().tolist(), d / "nc_edges-nodeid.pt")
    labels = torch.load(d / "labels-w-missing.pt").double()
    labels[MISSING[:2]] = float("nan")
    torch.save(labels, d / "labels-w-missing.pt")
    split = torch.load(d / "split.pt")
    masks = {}
    for src_key, key in (("train_idx", "train"), ("val_idx", "valid"), ("test_idx", "test")):
        m = torch.zeros(60, dtype=torch.bool)
        m[split[src_key]] = True
        masks[key] = m
    torch.save(masks, d / "split.pt")
    torch.save([f"B00FX{i:05d}" for i in range(60)], d / "node_mapping.pt")
    torch.save(torch.load(d / "t5dino_feat.pt").numpy(), d / "t5dino_feat.pt")
    rows = [json.loads(x) for x in (d / "raw-data" / "ele-fashion-raw-text.jsonl").read_text().splitlines()]
    out = []
    for k, r in enumerate(rows):
        if k % 2:
            out.append({"asin": r["id"], "raw_text": r["text"].split(" ", 1) if r["text"] else []})
        else:
            title, _, rest = r["text"].partition(" ")
            out.append({"asin": r["id"], "title": title, "description": rest or None})
    (d / "raw-data" / "ele-fashion-raw-text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))

    ds = load_task_data(card, verify=True)
    g = ds.graph
    assert torch.equal(g.edge_index, base.edge_index) and torch.equal(g.labels, base.labels)
    assert all(torch.equal(g.splits[s], base.splits[s]) for s in base.splits)
    assert g.images == base.images
    assert [t is None for t in g.texts] == [t is None for t in base.texts]
    assert g.texts[2].replace("\n", " ") == base.texts[2] and g.texts[1] == base.texts[1]
    assert torch.equal(g.features["t5dino"].values, base.features["t5dino"].values)
    assert any("t5dino_feat.pt: holds objects the safe loader refuses" in n for n in ds.notes)


@pytest.mark.parametrize("file, obj, needle", [
    ("nc_edges-nodeid.pt", torch.zeros(5, 3, dtype=torch.long), "expected an (E, 2) or (2, E) edge list"),
    ("nc_edges-nodeid.pt", torch.tensor([[0, 60]]), "node id 60 outside 0..59"),
    ("clip_feat.pt", torch.zeros(59, 8), "expected a (60, D) feature matrix"),
    ("split.pt", {"train_idx": [1], "test_idx": [2]}, "no 'val_idx' entry"),
    ("split.pt", [1, 2, 3], "expected a dict with train_idx, val_idx and test_idx"),
    ("labels-w-missing.pt", torch.tensor([0.5, 1.0]), "expected integer class ids"),
    ("node_mapping.pt", {"a": 99}, "expected a dict from raw ids to node ids 0..59"),
])
def test_malformed_files_name_the_file(tmp_path, installed, file, obj, needle):
    torch.save(obj, installed / file)
    with pytest.raises(DataError) as e:
        load_task_data(fixture_card(tmp_path), verify=False)
    assert str(installed / file) in str(e.value) and needle in str(e.value)


def test_bad_jsonl_line_names_file_and_line(tmp_path, installed):
    path = installed / "raw-data" / "ele-fashion-raw-text.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"id": "B00FX00002", "text": "unterminated}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{path}:3: not valid JSON"):
        load_task_data(fixture_card(tmp_path))


def test_labels_beyond_the_card_classes(tmp_path, installed):
    labels = torch.load(installed / "labels-w-missing.pt")
    labels[0] = 11  # a twelfth label value, as MM-GRAPH's num_classes = 12 would allow
    torch.save(labels, installed / "labels-w-missing.pt")
    with pytest.raises(DataError, match="classes: found 12, published 11"):
        load_task_data(fixture_card(tmp_path), verify=True)
    ds = load_task_data(fixture_card(tmp_path), verify=False)
    assert ds.graph.class_names[-1] == "class_11" and not ds.verified
    assert any("set dataset.missing_label" in n for n in ds.notes)
    # ... or the card declares that id as "missing"
    ds = load_task_data(fixture_card(tmp_path, missing_label=11), verify=True)
    assert int(ds.graph.labels[0]) == -1 and ds.verified


def test_split_overlap_and_class_names_file(tmp_path, installed):
    split = torch.load(installed / "split.pt")
    node = int(split["train_idx"][0])
    split["test_idx"] = torch.cat([split["test_idx"], torch.tensor([node])])
    torch.save(split, installed / "split.pt")
    with pytest.raises(DataError, match=f"node {node} is in both train and test"):
        load_task_data(fixture_card(tmp_path), verify=True)
    ds = load_task_data(fixture_card(tmp_path), verify=False)
    assert node in ds.graph.splits["train"].tolist() and node not in ds.graph.splits["test"].tolist()
    names = [f"style {i}" for i in range(11)]
    (installed / "class_names.json").write_text(json.dumps(names))
    assert load_task_data(fixture_card(tmp_path), verify=False).graph.class_names == tuple(names)


def test_features_subset_from_the_card(tmp_path, installed):
    ds = load_task_data(fixture_card(tmp_path, features=["clip", "t5vit"]), verify=True)
    assert sorted(ds.graph.features) == ["clip"]
    assert any("t5vit_feat.pt not found" in n for n in ds.notes)
    assert isinstance(ds.graph.features["clip"].values, torch.Tensor)
    assert np.isclose(ds.describe()["feature_coverage"]["clip"], 58 / 60)
