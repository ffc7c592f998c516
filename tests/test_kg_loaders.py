"""KG loaders on the tiny fixtures (exact MyGO formats), PyKEEN's bundled datasets and synth-mmkg."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from conftest import DB15K_FIXTURE_STATS, FIXTURES, MKGW_FIXTURE_STATS, card_raw, write_card

from mmbench.cli import main
from mmbench.data import data_status, load_task_data
from mmbench.data.kg import load_codebook
from mmbench.data.triples import read_id_triples, read_name_to_id
from mmbench.errors import ConfigError, DataError
from mmbench.tasks import get_card, load_card


def db15k_json(name: str) -> dict:
    if name == "visual":
        with zipfile.ZipFile(FIXTURES / "db15k" / "tokens" / "DB15K-visual.json.zip") as z:
            return json.loads(z.read("DB15K-visual.json"))
    return json.loads((FIXTURES / "db15k" / "tokens" / "DB15K-textual-v2.json").read_text())


def fixture_triples(fixture: str, split: str) -> list[list[int]]:
    lines = (FIXTURES / fixture / f"{split}.txt").read_text().splitlines()
    return [[int(x) for x in line.split("\t")] for line in lines]


# ------------------------------------------------------------------------------------------ DB15K
def test_db15k_fixture_loads_unverified(install_fixture):
    install_fixture("db15k")
    ds = load_task_data(get_card("db15k"), verify=False)
    assert ds.stats() == DB15K_FIXTURE_STATS
    assert ds.verified is False
    assert "entities: found 40, published 12,842" in ds.notes[0]
    for split in ("train", "valid", "test"):
        t = getattr(ds, split)
        assert t.dtype == torch.long
        assert t.tolist() == fixture_triples("db15k", split)  # columns h, r, t in file order
    assert ds.entity_names is None  # DB15K ships no entity2id.txt

    assert set(ds.modalities.tokens) == {"text", "image"}
    text, image = ds.modalities.tokens["text"], ds.modalities.tokens["image"]
    assert text.num_entities == image.num_entities == 40
    assert text.vocab_size == 30522 and image.vocab_size == 8192
    assert text.embeddings is None
    assert image.embeddings is not None and tuple(image.embeddings.shape) == (8193, 32)
    assert image.embeddings.dtype == torch.float32
    assert torch.equal(image.embeddings, torch.load(FIXTURES / "db15k" / "tokens" / "visual.pth",
                                                    weights_only=True))

    text_json, visual_json = db15k_json("text"), db15k_json("visual")
    for e in (0, 1, 22, 39):
        assert text.of(e).tolist() == text_json[str(e)]
    for e in (0, 5, 38):
        assert image.of(e).tolist() == visual_json[str(e)]
    assert image.of(0)[:2].tolist() == [0, 8191]
    assert text.of(0)[0] == 101 and text.of(0)[-1] == 102
    # absent entities: 0 tokens, everything else non-empty
    assert [e for e in range(40) if text.counts()[e] == 0] == [7, 23, 38]
    assert [e for e in range(40) if image.counts()[e] == 0] == [3, 12, 23, 31, 39]
    assert set((image.counts()[image.counts() > 0] // 196).tolist()) <= {1, 2, 3}
    assert int(text.counts().sum()) == sum(len(v) for v in text_json.values())
    desc = ds.modalities.describe()
    assert desc["tokens.text"]["coverage"] == pytest.approx(37 / 40)
    assert desc["tokens.image"]["coverage"] == pytest.approx(35 / 40)


def test_db15k_fixture_verify_names_mismatching_counts(install_fixture):
    install_fixture("db15k")
    with pytest.raises(DataError) as e:
        load_task_data(get_card("db15k"), verify=True)
    msg = str(e.value)
    for part in ("entities: found 40, published 12,842", "relations: found 6, published 279",
                 "train: found 150, published 79,222", "valid: found 20, published 9,904",
                 "test: found 20, published 9,902", "--unverified-data"):
        assert part in msg


def test_db15k_fixture_verifies_with_matching_card(install_fixture, fixture_db15k_card):
    install_fixture("db15k")
    ds = load_task_data(load_card(fixture_db15k_card), verify=True)
    assert ds.verified is True and ds.notes == []


def test_unzipped_visual_file_is_read_too(install_fixture):
    d = install_fixture("db15k")
    zpath = d / "tokens" / "DB15K-visual.json.zip"
    with zipfile.ZipFile(zpath) as z:
        (d / "tokens" / "DB15K-visual.json").write_bytes(z.read("DB15K-visual.json"))
    zpath.unlink()
    ds = load_task_data(get_card("db15k"), verify=False)
    assert ds.modalities.tokens["image"].of(5).tolist() == db15k_json("visual")["5"]


# ------------------------------------------------------------------------------------------ MKG-W
def test_mkgw_fixture_maps_uri_keys_through_entity2id(install_fixture):
    d = install_fixture("mkg-w")
    ds = load_task_data(get_card("mkg-w"), verify=False)
    assert ds.stats() == MKGW_FIXTURE_STATS
    names = read_name_to_id(d / "entity2id.txt")
    assert ds.entity_names is not None and len(ds.entity_names) == 36
    assert ds.entity_names[0].startswith("http://www.wikidata.org/entity/Q")
    assert all(ds.entity_names[i] == uri for uri, i in names.items())
    text_json = json.loads((d / "tokens" / "MKG-W-textual.json").read_text())
    visual_json = json.loads((d / "tokens" / "MKG-W-visual.json").read_text())
    text, image = ds.modalities.tokens["text"], ds.modalities.tokens["image"]
    for i in (1, 2, 17, 35):
        uri = ds.entity_names[i]
        assert text.of(i).tolist() == text_json[uri]
        assert image.of(i).tolist() == visual_json[uri]
    assert [e for e in range(36) if text.counts()[e] == 0] == [4, 19]
    assert [e for e in range(36) if image.counts()[e] == 0] == [0, 11, 27]
    assert tuple(image.embeddings.shape) == (8193, 32)
    # the token file holds one URI that names no entity: skipped with a note
    assert len(text_json) == 35
    assert "MKG-W-textual.json: 1 keys name no entity and were skipped" in ds.notes


def test_mkgw_without_entity2id_names_the_file(install_fixture):
    d = install_fixture("mkg-w")
    (d / "entity2id.txt").unlink()
    with pytest.raises(DataError, match="entity2id.txt is missing"):
        load_task_data(get_card("mkg-w"), verify=False)


def test_token_keys_matching_no_entity(install_fixture):
    d = install_fixture("mkg-w")
    path = d / "tokens" / "MKG-W-visual.json"
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({k.rsplit("/", 1)[-1]: v for k, v in raw.items()}))  # "Q42" instead of URIs
    with pytest.raises(DataError, match="none of its 33 keys names an entity .*entity_keys"):
        load_task_data(get_card("mkg-w"), verify=False)


# ------------------------------------------------------------------------------------------ errors
def test_malformed_triple_line_names_file_and_line(install_fixture):
    d = install_fixture("db15k")
    path = d / "train.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[4] = "12\t3\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError) as e:
        load_task_data(get_card("db15k"), verify=False)
    assert f"{path}:5: expected 3 integer ids (head, relation, tail), got '12\\t3'" in str(e.value)


def test_non_integer_id_names_file_and_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1\t2\t3\n4\tx\t6\n")
    with pytest.raises(DataError, match=r"t\.txt:2: expected 3 integer ids"):
        read_id_triples(path)


def test_entity_id_out_of_range_names_file_and_line(install_fixture):
    d = install_fixture("db15k")
    path = d / "valid.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = "40\t0\t1\n"  # 40 entities: ids 0..39
    path.write_text("".join(lines))
    with pytest.raises(DataError) as e:
        load_task_data(get_card("db15k"), verify=False)
    assert str(e.value).startswith(f"{path}:7: triple (40, 0, 1) is out of range: 40 entities and 6 relations")


def test_relation_id_out_of_range(install_fixture):
    d = install_fixture("db15k")
    path = d / "test.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[-1] = "1\t6\t2\n"
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"test\.txt:20: triple \(1, 6, 2\) is out of range"):
        load_task_data(get_card("db15k"), verify=False)


def test_token_id_outside_vocabulary(install_fixture):
    d = install_fixture("db15k")
    path = d / "tokens" / "DB15K-textual-v2.json"
    raw = json.loads(path.read_text())
    raw["2"] = [101, 30522, 102]
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError) as e:
        load_task_data(get_card("db15k"), verify=False)
    assert f"{path}: entry '2' has token id 30522 outside the vocabulary [0, 30522)" in str(e.value)


def test_visual_code_outside_codebook_vocabulary(install_fixture):
    d = install_fixture("mkg-w")
    path = d / "tokens" / "MKG-W-visual.json"
    raw = json.loads(path.read_text())
    key = next(iter(raw))
    raw[key][10] = 8192
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="has token id 8192 outside the vocabulary \\[0, 8192\\)"):
        load_task_data(get_card("mkg-w"), verify=False)


def test_token_file_not_json(install_fixture):
    d = install_fixture("db15k")
    (d / "tokens" / "DB15K-textual-v2.json").write_text("{not json")
    with pytest.raises(DataError, match="DB15K-textual-v2.json: not valid JSON"):
        load_task_data(get_card("db15k"), verify=False)


def test_missing_token_file_tells_how_to_get_it(install_fixture):
    d = install_fixture("db15k")
    (d / "tokens" / "DB15K-textual-v2.json").unlink()
    with pytest.raises(DataError) as e:
        load_task_data(get_card("db15k"), verify=False)
    assert "text token file tokens/DB15K-textual-v2.json is missing" in str(e.value)
    assert "mmbench data prepare db15k --from DIR" in str(e.value)


def test_small_codebook_rejected(install_fixture):
    d = install_fixture("db15k")
    torch.save(torch.zeros(1024, 256), d / "tokens" / "visual.pth")  # the VQGAN codebook's shape
    with pytest.raises(DataError, match="1024 codes, but the card declares vocab_size 8192"):
        load_task_data(get_card("db15k"), verify=False)


def test_codebook_as_state_dict_or_parameter(tmp_path):
    cb = torch.randn(10, 4)
    torch.save({"quantize.embedding.weight": cb}, tmp_path / "a.pth")
    torch.save(torch.nn.Parameter(cb.clone()), tmp_path / "b.pth")
    assert torch.equal(load_codebook(tmp_path / "a.pth"), cb)
    assert torch.equal(load_codebook(tmp_path / "b.pth"), cb)
    torch.save({"a": cb, "b": cb}, tmp_path / "c.pth")
    with pytest.raises(DataError, match="expected one 2-D tensor in the saved dict, found 2"):
        load_codebook(tmp_path / "c.pth")


def test_missing_split_files_tell_how_to_prepare():
    card = get_card("db15k")
    assert data_status(card) == (False, "not prepared (run: mmbench data prepare db15k --from DIR)")
    with pytest.raises(DataError) as e:
        load_task_data(card, verify=False)
    msg = str(e.value)
    assert "missing train.txt, valid.txt, test.txt" in msg
    assert "mmbench data prepare db15k --from DIR" in msg
    assert "https://github.com/zjukg/MyGO" in msg


def test_one_missing_split_file(install_fixture):
    d = install_fixture("db15k")
    (d / "valid.txt").unlink()
    with pytest.raises(DataError, match=r"(?s)missing valid\.txt in .*mmbench data prepare db15k --from"):
        load_task_data(get_card("db15k"), verify=False)


def test_list_tasks_shows_db15k_missing_then_ready(install_fixture, capsys):
    def db15k_line() -> str:
        assert main(["list", "tasks"]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("db15k "))

    assert db15k_line().split()[2] == "missing"
    install_fixture("db15k")
    assert db15k_line().split()[2] == "ready"


def test_eval_on_missing_dataset_exits_2(capsys):
    assert main(["eval", "--model", "distmult", "--task", "db15k", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: task db15k: missing train.txt")
    assert "mmbench data prepare db15k --from DIR" in err


# ------------------------------------------------------------------------------------------ PyKEEN
@pytest.mark.parametrize("task, stats", [
    ("nations", {"entities": 14, "relations": 55, "train": 1592, "valid": 199, "test": 201}),
    ("kinships", {"entities": 104, "relations": 25, "train": 8544, "valid": 1068, "test": 1074}),
    ("umls", {"entities": 135, "relations": 46, "train": 5216, "valid": 652, "test": 661}),
])
def test_pykeen_datasets_have_published_counts(task, stats):
    ds = load_task_data(get_card(task), verify=True)
    assert ds.stats() == stats
    assert ds.verified is True
    assert ds.modalities.is_empty
    assert list(ds.entity_names) == sorted(ds.entity_names)
    assert list(ds.relation_names) == sorted(ds.relation_names)
    for split in (ds.train, ds.valid, ds.test):
        assert int(split[:, [0, 2]].max()) < stats["entities"] and int(split[:, 1].max()) < stats["relations"]
    assert load_task_data(get_card(task)).data_hash() == ds.data_hash()


def test_pykeen_ids_follow_names():
    ds = load_task_data(get_card("nations"))
    assert "usa" in ds.entity_names and "ussr" in ds.entity_names
    h, r, t = ds.train[0].tolist()
    assert ds.entity_names[h] and ds.relation_names[r] and ds.entity_names[t]


def test_pykeen_count_mismatch(tmp_path):
    raw = card_raw("nations")
    raw["dataset"]["expected"]["train"] = 1600
    card = load_card(write_card(tmp_path, raw))
    with pytest.raises(DataError, match="train: found 1,592, published 1,600"):
        load_task_data(card, verify=True)
    assert load_task_data(card, verify=False).verified is False


# ------------------------------------------------------------------------------------------ synth-mmkg
def small_synth(tmp_path, **params):
    raw = card_raw("synth-mmkg")
    raw["dataset"]["params"].update(num_entities=300, num_regions=5, num_triples=2000, **params)
    raw["dataset"]["expected"] = {"entities": 300, "relations": 24, "train": 1600, "valid": 200, "test": 200}
    return load_card(write_card(tmp_path / f"s{len(list(tmp_path.glob('s*')))}", raw))


def test_synth_mmkg_is_deterministic():
    card = get_card("synth-mmkg")
    a, b = load_task_data(card), load_task_data(card)
    assert a.stats() == {"entities": 3000, "relations": 24, "train": 8000, "valid": 1000, "test": 1000}
    assert a.data_hash() == b.data_hash()
    assert torch.equal(a.train, b.train)
    assert set(a.modalities.tokens) == {"text"} and set(a.modalities.features) == {"image"}
    assert tuple(a.modalities.features["image"].values.shape) == (3000, 4, 32)
    # distinct, loop-free triples
    all_t = torch.cat([a.train, a.valid, a.test])
    assert len(torch.unique(all_t, dim=0)) == len(all_t)
    assert not bool((all_t[:, 0] == all_t[:, 2]).any())


def test_synth_mmkg_seed_changes_the_data(tmp_path):
    s0a, s0b, s1 = small_synth(tmp_path), small_synth(tmp_path), small_synth(tmp_path, seed=1)
    h0 = load_task_data(s0a).data_hash()
    assert load_task_data(s0b).data_hash() == h0
    d1 = load_task_data(s1)
    assert d1.stats() == load_task_data(s0a).stats()
    assert d1.data_hash() != h0
    assert s1.fingerprint(d1.data_hash()) != s0a.fingerprint(h0)


def test_synth_mmkg_unknown_param(tmp_path):
    raw = card_raw("synth-mmkg")
    raw["dataset"]["params"]["num_entitys"] = 10
    card = load_card(write_card(tmp_path, raw))
    with pytest.raises(ConfigError, match=r"unknown synth-mmkg parameter\(s\) \['num_entitys'\]"):
        load_task_data(card)


def test_unknown_loader(tmp_path):
    raw = card_raw("nations")
    raw["dataset"]["loader"] = "pykeem"
    card = load_card(write_card(tmp_path, raw))
    with pytest.raises(ConfigError, match="unknown dataset loader 'pykeem'. Did you mean 'pykeen'"):
        load_task_data(card)


# ------------------------------------------------------------------------------------------ fixtures
def test_fixtures_match_their_generator(tmp_path, monkeypatch):
    """tests/fixtures/make_kg_fixtures.py reproduces the committed files (visual.pth: same tensor)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_kg_fixtures", FIXTURES / "make_kg_fixtures.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    monkeypatch.setattr(gen, "HERE", tmp_path)
    gen.main()
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    own = {p.parts[0] for p in made}  # the folders this generator writes (others have their own generators)
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*")
                       if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
                       and p.relative_to(FIXTURES).parts[0] in own)
    assert made == committed
    for rel in made:
        if rel.suffix == ".pth":
            assert torch.equal(torch.load(tmp_path / rel, weights_only=True),
                               torch.load(FIXTURES / rel, weights_only=True)), rel
        else:
            assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), rel
