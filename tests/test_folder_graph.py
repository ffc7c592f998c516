"""The bring-your-own graph folder (docs/byo-graph.md): the example, every validation error, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, copy_fixture, write_card

from mmbench.cli import main
from mmbench.data import data_status, load_task_data, prepare_task_data
from mmbench.errors import ConfigError, DataError
from mmbench.tasks import get_card, load_card

EXAMPLE_STATS = {"nodes": 12, "edges": 30, "with_text": 11, "with_image": 5, "train": 6, "valid": 2, "test": 3,
                 "classes": 2}


def card_dict(name="my-graph", family="classification", **dataset):
    metrics = ["accuracy", "macro_f1"] if family == "classification" else ["bleu4", "rouge_l"]
    return {"name": name, "version": 1, "family": family, "description": "A bring-your-own graph.",
            "dataset": {"loader": "folder", **dataset}, "splits": ["train", "valid", "test"],
            "metrics": metrics, "main_metric": metrics[0], "protocol": {"selection_metric": metrics[0]}}


@pytest.fixture
def folder(tmp_path) -> Path:
    return copy_fixture("byo-graph", tmp_path / "graphs" / "byo")


def load(tmp_path, verify=True, **dataset):
    """Load the copied example through a card in tmp/cards whose path is relative to the card."""
    dataset.setdefault("path", "../graphs/byo")
    family = dataset.pop("family", "classification")
    return load_task_data(load_card(write_card(tmp_path / "cards", card_dict(family=family, **dataset))), verify)


def test_the_example_loads(tmp_path, folder):
    ds = load(tmp_path, expected=dict(EXAMPLE_STATS))
    g = ds.graph
    assert ds.verified and ds.notes == [] and ds.stats() == EXAMPLE_STATS
    assert g.meta["node_ids"] == ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "11", "p12")
    assert g.class_names == ("shoe", "bag")
    assert g.labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1, 1]
    assert {s: v.tolist() for s, v in g.splits.items()} == {"train": [0, 1, 2, 5, 6, 7], "valid": [3, 9],
                                                            "test": [4, 8, 11]}
    assert g.texts[8] is None and g.texts[10] == "shoe care kit"
    assert g.images[0] == str(folder / "images" / "p1.png") and Path(g.images[0]).is_file()
    assert g.images[2] is None
    assert g.kinds[11] == "product" and g.kinds[0] == "node"
    assert g.edge_type_names == ("text-text", "image-image", "text-image")
    assert g.edge_type.bincount().tolist() == [18, 6, 6]
    pairs = {(a, b, t) for (a, b), t in zip(g.edge_index.t().tolist(), g.edge_type.tolist(), strict=True)}
    assert all((b, a, t) in pairs for a, b, t in pairs)
    assert (8, 6, 2) in pairs and (6, 8, 2) in pairs  # p9 - p7, text-image
    assert g.targets is None
    assert g.meta["candidate_classes"] == (0, 1)
    sample = ds.assemble(0)
    assert sample.nodes[0].image == g.images[0] and sample.edge_type_names == g.edge_type_names


def test_a_card_alone_defines_a_task(env, tmp_path, folder, monkeypatch, capsys):
    """A card on MMBENCH_TASK_PATH (absolute path) is a registered task, listed and loadable by name."""
    cards = tmp_path / "my-tasks"
    write_card(cards, card_dict(path=str(folder)))
    monkeypatch.setenv("MMBENCH_TASK_PATH", str(cards))
    card = get_card("my-graph")
    assert data_status(card) == (True, f"folder {folder}")
    assert load_task_data(card).stats() == EXAMPLE_STATS
    assert main(["list", "tasks"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("my-graph"))
    assert line.split()[1:3] == ["classification", "ready"]


def test_dir_under_mmbench_data_and_prepare(env, tmp_path, folder):
    card = load_card(write_card(tmp_path / "cards", card_dict(dir="shop")))
    present, detail = data_status(card)
    assert not present and "run: mmbench data prepare my-graph --from DIR" in detail
    with pytest.raises(DataError, match="missing nodes.jsonl, edges.tsv, split.json, labels.json"):
        load_task_data(card)
    manifest = prepare_task_data(card, folder)
    dest = env.data / "shop"
    assert sorted(manifest["files"]) == ["edges.tsv", "labels.json", "nodes.jsonl", "split.json"]
    assert manifest["images"] == 5 and (dest / "images" / "p8.png").is_file()
    assert json.loads((dest / "MANIFEST.json").read_text()) == manifest
    ds = load_task_data(card)
    assert ds.stats() == EXAMPLE_STATS and ds.graph.images[0] == str(dest / "images" / "p1.png")
    in_place = load_card(write_card(tmp_path / "cards2", card_dict(path=str(folder))))
    with pytest.raises(ConfigError, match="reads the folder in place"):
        prepare_task_data(in_place, folder)


def replace_line(path: Path, lineno: int, text: str | None) -> None:
    lines = path.read_text().splitlines()
    if text is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text + "\n")


SPLIT_TWICE = ('{\n  "train": ["p1", "p2", "p3", "p6", "p7", "p8"],\n'
               '  "valid": ["p4", "p10", "p1"],\n  "test": ["p5"]\n}\n')


@pytest.mark.parametrize("mutate, file, line, needle", [
    (lambda d: append(d / "nodes.jsonl", '{"id": "p3", "text": "again"}'),
     "nodes.jsonl", 13, "duplicate node id 'p3' (first on line 3)"),
    (lambda d: append(d / "nodes.jsonl", '{"id": 11}'), "nodes.jsonl", 13, "duplicate node id '11' (first on line 11)"),
    (lambda d: replace_line(d / "nodes.jsonl", 5, '{"id": "p5", "text": "loafer"'),
     "nodes.jsonl", 5, "not valid JSON"),
    (lambda d: replace_line(d / "nodes.jsonl", 5, '["p5"]'), "nodes.jsonl", 5, "expected a JSON object"),
    (lambda d: replace_line(d / "nodes.jsonl", 5, '{"text": "loafer"}'), "nodes.jsonl", 5, 'has no "id"'),
    (lambda d: replace_line(d / "nodes.jsonl", 2, '{"id": "p2", "label": "shoes"}'),
     "nodes.jsonl", 2, "label 'shoes' of node 'p2' is not in labels.json. Did you mean 'shoe'?"),
    (lambda d: replace_line(d / "nodes.jsonl", 2, '{"id": "p2", "label": 0}'),
     "nodes.jsonl", 2, '"label" must be a string or null'),
    (lambda d: (d / "images" / "p4.png").unlink(),
     "nodes.jsonl", 4, "image 'images/p4.png' of node 'p4' does not exist"),
    (lambda d: append(d / "edges.tsv", "p1\tp99\ttext-text"), "edges.tsv", 17, "unknown target node id 'p99'"),
    (lambda d: append(d / "edges.tsv", "q1\tp2\ttext-text"), "edges.tsv", 17, "unknown source node id 'q1'"),
    (lambda d: append(d / "edges.tsv", "p1\tp3\tsimilar"), "edges.tsv", 17, "unknown edge type 'similar'"),
    (lambda d: append(d / "edges.tsv", "p1\tp3"), "edges.tsv", 17, "got 2 tab-separated field(s)"),
    (lambda d: (d / "split.json").write_text(SPLIT_TWICE), "split.json", 3,
     "node 'p1' is listed in both train and valid"),
    (lambda d: (d / "split.json").write_text('{"train": ["p1"],\n "valid": ["p1x"], "test": []}'), "split.json", 2,
     "unknown node id 'p1x'"),
    (lambda d: (d / "split.json").write_text('{"train": ["p1", "p1"], "valid": [], "test": []}'), "split.json", 1,
     "node 'p1' is listed twice in train"),
    (lambda d: (d / "split.json").write_text('{"train": [],\n "val": [], "test": []}'), "split.json", 2,
     "unknown split 'val'"),
    (lambda d: (d / "labels.json").write_text('[\n "shoe",\n "bag",\n "shoe"\n]'), "labels.json", 4,
     "class 'shoe' is listed twice"),
])
def test_validation_errors_name_file_and_line(tmp_path, folder, mutate, file, line, needle):
    mutate(folder)
    with pytest.raises(DataError) as e:
        load(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{folder / file}:{line}: "), msg
    assert needle in msg


def test_a_split_node_needs_its_answer(tmp_path, folder):
    (folder / "split.json").write_text(json.dumps({"train": ["p1"], "valid": ["11"], "test": []}))
    with pytest.raises(DataError) as e:
        load(tmp_path)
    assert str(e.value) == (f"{folder / 'split.json'}: node '11' (valid; nodes.jsonl line 11) has no \"label\"; "
                            f"every train/valid/test node of a classification task needs one")


def test_missing_images_skip(tmp_path, folder):
    (folder / "images" / "p4.png").unlink()
    (folder / "images" / "p8.png").unlink()
    ds = load(tmp_path, missing_images="skip")
    assert ds.graph.images[3] is None and ds.graph.images[7] is None and ds.stats()["with_image"] == 3
    assert ds.notes == ["nodes.jsonl: 2 image file(s) missing; those nodes have no image (missing_images: skip)"]


def test_generation_family_with_targets(tmp_path):
    d = tmp_path / "graphs" / "byo"
    d.mkdir(parents=True)
    nodes = [{"id": "page", "text": "Page: Lisbon", "kind": "page"},
             {"id": "s1", "text": "History of the city.", "target": "Lisbon is old.", "kind": "section"},
             {"id": "s2", "text": "Its climate.", "target": "It is warm.", "kind": "section"},
             {"id": "s3", "text": "Its food.", "target": "Fish is common.", "kind": "section"}]
    (d / "nodes.jsonl").write_text("".join(json.dumps(n) + "\n" for n in nodes))
    (d / "edges.tsv").write_text("page\ts1\npage\ts2\npage\ts3\ns1\ts2\n")
    (d / "split.json").write_text(json.dumps({"train": ["s1"], "valid": ["s2"], "test": ["s3"]}))
    ds = load(tmp_path, family="generation", edge_types=["text-text"])
    g = ds.graph
    assert g.targets == (None, "Lisbon is old.", "It is warm.", "Fish is common.")
    assert g.labels is None and g.class_names == () and g.kinds[0] == "page"
    assert g.edge_index.shape == (2, 8) and g.edge_type_names == ("text-text",)
    assert "train_classes" not in g.meta
    (d / "split.json").write_text(json.dumps({"train": ["s1"], "valid": ["page"], "test": ["s3"]}))
    with pytest.raises(DataError, match=r"node 'page' \(valid; nodes.jsonl line 1\) has no \"target\""):
        load(tmp_path, family="generation", edge_types=["text-text"])


def test_directed_edges_and_repeats(tmp_path, folder):
    ds = load(tmp_path, directed=True)
    assert ds.stats()["edges"] == 15
    append(folder / "edges.tsv", "p2\tp1\ttext-text")  # the reverse of line 2: a repeat when undirected
    append(folder / "edges.tsv", "p3\tp3\ttext-text")  # a self-loop is kept once
    ds = load(tmp_path)
    assert ds.stats()["edges"] == 31
    assert ds.notes == ["edges.tsv: 2 repeated edge(s) stored once"]


def test_zero_shot_on_a_folder(tmp_path, folder):
    raw = card_dict(path="../graphs/byo")
    raw["protocol"]["zero_shot"] = {"seen_classes": ["shoe"], "unseen_classes": ["bag"]}
    g = load_task_data(load_card(write_card(tmp_path / "cards", raw))).graph
    assert g.splits["train"].tolist() == [0, 1, 2] and g.splits["valid"].tolist() == [9]
    assert g.splits["test"].tolist() == [8, 11]
    assert (g.meta["train_classes"], g.meta["candidate_classes"]) == ((0,), (1,))


@pytest.mark.parametrize("option, needle", [
    ({"missing_images": "maybe"}, "dataset.missing_images must be 'error' or 'skip'"),
    ({"directed": "yes"}, "dataset.directed must be true or false"),
    ({"edge_types": []}, "dataset.edge_types must be a non-empty list"),
])
def test_bad_card_options(tmp_path, folder, option, needle):
    with pytest.raises(ConfigError, match=needle):
        load(tmp_path, **option)


def test_expected_counts_are_checked(tmp_path, folder):
    with pytest.raises(DataError, match="nodes: found 12, published 13"):
        load(tmp_path, expected={"nodes": 13})
    ds = load(tmp_path, verify=False, expected={"nodes": 13})
    assert not ds.verified


def test_docs_example_card_matches_the_fixture():
    """The card in docs/byo-graph.md loads the example folder with its `expected` counts."""
    text = (FIXTURES.parent.parent / "docs" / "byo-graph.md").read_text()
    assert "expected: {nodes: 12, edges: 30, classes: 2, train: 6, valid: 2, test: 3}" in text
