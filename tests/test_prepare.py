"""``mmbench data prepare``: gather a release (MyGO or OpenKE layout) into $MMBENCH_DATA and verify it."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import DB15K_FIXTURE_STATS, FIXTURES, card_raw, copy_fixture, write_card

from mmbench.cli import main
from mmbench.data import load_task_data, prepare_task_data
from mmbench.data.prepare import prepare
from mmbench.errors import ConfigError, DataError
from mmbench.tasks import get_card, load_card

MYGO_FILES = ["entities.txt", "relations.txt", "test.txt", "tokens/DB15K-textual-v2.json",
              "tokens/DB15K-visual.json.zip", "tokens/visual.pth", "train.txt", "valid.txt"]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prepare_from_mygo_layout(env, tmp_path, fixture_db15k_card):
    src = copy_fixture("db15k", tmp_path / "download")
    card = load_card(fixture_db15k_card)
    manifest = prepare(card, src)
    dest = env.data / "db15k"
    assert sorted(manifest["files"]) == MYGO_FILES
    for rel, entry in manifest["files"].items():
        assert (dest / rel).is_file() and not (dest / rel).is_symlink()
        assert entry["sha256"] == sha256(dest / rel) == sha256(FIXTURES / "db15k" / rel)
        assert entry["from"] == str(src / rel)
    assert manifest["stats"] == DB15K_FIXTURE_STATS
    assert manifest["task"] == "db15k" and manifest["linked"] is False
    assert manifest["source"] == str(src.resolve())
    assert manifest["notes"] == []
    assert manifest["modalities"]["tokens.image"]["vocab_size"] == 8192
    assert json.loads((dest / "MANIFEST.json").read_text()) == manifest
    # the prepared copy now loads, verified, with the bundled loader
    ds = load_task_data(card, verify=True)
    assert ds.stats() == DB15K_FIXTURE_STATS
    # preparing again overwrites in place
    again = prepare(card, src)
    assert {k: v["sha256"] for k, v in again["files"].items()} == {k: v["sha256"] for k, v in manifest["files"].items()}


def test_prepare_from_a_mygo_clone(env, tmp_path, fixture_db15k_card):
    """The repository's own layout: data/DB15K/*.txt and tokens/ at the top."""
    clone = tmp_path / "MyGO"
    shutil.copytree(FIXTURES / "db15k", clone / "data" / "DB15K", ignore=shutil.ignore_patterns("tokens"))
    shutil.copytree(FIXTURES / "db15k" / "tokens", clone / "tokens")
    (clone / "tokens" / "DB15K-textual.json").write_text("{}")  # the older file, not read
    manifest = prepare(load_card(fixture_db15k_card), clone)
    assert sorted(manifest["files"]) == MYGO_FILES
    assert manifest["files"]["train.txt"]["from"] == str(clone / "data" / "DB15K" / "train.txt")
    assert manifest["files"]["tokens/DB15K-visual.json.zip"]["from"] == str(clone / "tokens" / "DB15K-visual.json.zip")
    assert (env.data / "db15k" / "train.txt").read_bytes() == (FIXTURES / "db15k" / "train.txt").read_bytes()


def test_prepare_with_link(env, tmp_path, fixture_db15k_card):
    src = copy_fixture("db15k", tmp_path / "download")
    manifest = prepare(load_card(fixture_db15k_card), src, link=True)
    assert manifest["linked"] is True
    for rel in MYGO_FILES:
        p = env.data / "db15k" / rel
        assert p.is_symlink() and p.resolve() == (src / rel).resolve()


def test_prepare_with_published_counts_fails_verification(env, tmp_path):
    src = copy_fixture("db15k", tmp_path / "download")
    with pytest.raises(DataError) as e:
        prepare(get_card("db15k"), src)
    assert "entities: found 40, published 12,842" in str(e.value)
    assert "test: found 20, published 9,902" in str(e.value)
    assert not (env.data / "db15k" / "MANIFEST.json").exists()


def test_prepare_from_openke_layout(env, tmp_path, fixture_db15k_card):
    """AdaMF-MAT benchmarks/DB15K (count header, columns h t r) plus MyGO's tokens/."""
    src = copy_fixture("openke-db15k", tmp_path / "AdaMF-MAT")
    shutil.copytree(FIXTURES / "db15k" / "tokens", src / "tokens")
    manifest = prepare(load_card(fixture_db15k_card), src)
    dest = env.data / "db15k"
    for split in ("train", "valid", "test"):
        # identical bytes to the MyGO fixture: h\tr\tt, no header, same order
        assert (dest / f"{split}.txt").read_text() == (FIXTURES / "db15k" / f"{split}.txt").read_text()
        assert manifest["files"][f"{split}.txt"]["from"] == \
            f"{src / 'benchmarks' / 'DB15K' / f'{split}2id.txt'} (converted from OpenKE h t r)"
    first = (dest / "train.txt").read_text().splitlines()[0]
    assert first.count("\t") == 2
    assert sorted(manifest["files"]) == ["entity2id.txt", "relation2id.txt", "test.txt", "tokens/DB15K-textual-v2.json",
                                         "tokens/DB15K-visual.json.zip", "tokens/visual.pth", "train.txt",
                                         "valid.txt"]
    assert manifest["stats"] == DB15K_FIXTURE_STATS
    ds = load_task_data(load_card(fixture_db15k_card), verify=True)
    assert ds.entity_names[3] == "http://dbpedia.org/resource/Fixture_entity_3"
    assert ds.modalities.tokens["text"].counts()[7] == 0


def test_openke_header_mismatch_names_the_file(tmp_path, fixture_db15k_card):
    src = copy_fixture("openke-db15k", tmp_path / "AdaMF-MAT")
    path = src / "benchmarks" / "DB15K" / "valid2id.txt"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    with pytest.raises(DataError, match=r"valid2id\.txt:1: header declares 20 triples but the file has 19"):
        prepare(load_card(fixture_db15k_card), src)


def test_prepare_errors(tmp_path, fixture_db15k_card):
    card = load_card(fixture_db15k_card)
    with pytest.raises(DataError, match="not a directory"):
        prepare(card, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"found neither train\.txt .* nor train2id\.txt"):
        prepare(card, tmp_path / "empty")
    with pytest.raises(ConfigError, match="task nations: its data \\(pykeen\\) needs no preparation"):
        prepare_task_data(get_card("nations"), tmp_path)


def test_prepare_cli(env, tmp_path, fixture_db15k_card, capsys):
    src = copy_fixture("db15k", tmp_path / "download")
    assert main(["data", "prepare", "db15k", "--from", str(src)]) == 2
    assert "published 12,842" in capsys.readouterr().err
    assert main(["data", "prepare", str(fixture_db15k_card), "--from", str(src)]) == 0
    out = capsys.readouterr().out
    assert "'entities': 40, 'relations': 6, 'train': 150, 'valid': 20, 'test': 20" in out
    assert (env.data / "db15k" / "MANIFEST.json").exists()


def test_failed_prepare_leaves_no_stale_manifest(env, tmp_path, fixture_db15k_card):
    card = load_card(fixture_db15k_card)
    src = copy_fixture("db15k", tmp_path / "download")
    prepare(card, src)
    train = src / "train.txt"
    train.write_text("".join(train.read_text().splitlines(keepends=True)[:-1]))  # 149 triples: wrong release
    with pytest.raises(DataError, match="train: found 149, published 150"):
        prepare(card, src)
    dest = env.data / "db15k"
    manifest_path = dest / "MANIFEST.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        assert manifest["files"]["train.txt"]["sha256"] == sha256(dest / "train.txt")


def test_openke_counts_come_from_the_data_not_the_card(env, tmp_path):
    raw = card_raw("db15k")
    raw["dataset"]["expected"] = {**DB15K_FIXTURE_STATS, "entities": 41, "relations": 7}
    card = load_card(write_card(tmp_path / "cards", raw))
    src = copy_fixture("openke-db15k", tmp_path / "AdaMF-MAT")
    shutil.copytree(FIXTURES / "db15k" / "tokens", src / "tokens")
    with pytest.raises(DataError, match="entities: found 40, published 41"):
        prepare(card, src)


def test_prepare_errors_name_the_users_file_not_the_staging_copy(env, tmp_path, fixture_db15k_card, capsys):
    src = copy_fixture("db15k", tmp_path / "download")
    lines = (src / "train.txt").read_text().splitlines(keepends=True)
    lines[6] = "only-two\tcolumns\n"
    (src / "train.txt").write_text("".join(lines))
    assert main(["data", "prepare", str(fixture_db15k_card), "--from", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"{src / 'train.txt'}:7" in err
    assert "staging" not in err


def test_prepare_unverified_data_is_accepted_and_recorded(env, tmp_path, capsys):
    src = copy_fixture("db15k", tmp_path / "download")
    assert main(["data", "prepare", "db15k", "--from", str(src)]) == 2
    err = capsys.readouterr().err
    assert "--unverified-data" in err and "published 12,842" in err
    assert main(["data", "prepare", "db15k", "--from", str(src), "--unverified-data"]) == 0
    manifest = json.loads((env.data / "db15k" / "MANIFEST.json").read_text())
    assert manifest["verified"] is False and manifest["stats"] == DB15K_FIXTURE_STATS
    assert any("published 12,842" in note for note in manifest["notes"])
    with pytest.raises(DataError, match="published 12,842"):
        load_task_data(get_card("db15k"), verify=True)  # runs on it still need --unverified-data
    assert load_task_data(get_card("db15k"), verify=False).verified is False
