"""WikiWeb2M (``wikiweb-gen``): TFRecord/proto codec, prepare from both source layouts, sampling, the page
graph and the per-target input assembly."""

from __future__ import annotations

import gzip
import importlib.util
import json
import pickle
import shutil
import struct

import pytest
import torch
from conftest import FIXTURES, card_raw, write_card

from mmbench.data import data_status, load_task_data, prepare_task_data
from mmbench.data import wikiweb as ww
from mmbench.data.tfrecord import (
    Feature,
    TFRecordError,
    crc32c,
    decode_example,
    decode_sequence_example,
    encode_example,
    encode_sequence_example,
    feature,
    masked_crc32c,
    read_records,
    write_records,
)
from mmbench.errors import ConfigError, DataError
from mmbench.io import sha256_hex
from mmbench.tasks import get_card, load_card

WW = FIXTURES / "wikiweb"


def _gen():
    spec = importlib.util.spec_from_file_location("make_wikiweb_fixtures", WW / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _card(tmp_path, **params):
    raw = card_raw("wikiweb-gen")
    raw["dataset"]["params"].update(params)
    return load_card(write_card(tmp_path / f"cards{len(list(tmp_path.glob('cards*')))}", raw))


def _manifest(env):
    return json.loads((env.data / "wikiweb-gen" / "MANIFEST.json").read_text())


# ------------------------------------------------------------------------------------------ TFRecord
def test_crc32c_known_values():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    c = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("name, compression", [("a.tfrecord", None), ("a.tfrecord.gz", "auto"),
                                               ("a.tfrecord.gz-00000-of-00002", "auto"), ("plain-name", "GZIP")])
def test_tfrecord_round_trip(tmp_path, name, compression):
    records = [b"", b"x", bytes(range(256)) * 3, "ünïcode".encode()]
    path = tmp_path / name
    assert write_records(path, records, compression=compression) == 4
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compression is not None)
    assert list(read_records(path, verify_crc=True)) == records  # "auto" also sniffs the gzip magic
    assert list(read_records(path)) == records


def test_tfrecord_corruption_is_reported_with_file_and_record(tmp_path):
    path = tmp_path / "c.tfrecord"
    write_records(path, [b"first", b"second record", b"third"], compression=None)
    data = bytearray(path.read_bytes())
    off = 12 + 5 + 4 + 12  # start of record 1's data
    data[off] ^= 0xFF
    path.write_bytes(bytes(data))
    assert len(list(read_records(path))) == 3  # the data CRC is only checked on request
    with pytest.raises(TFRecordError, match=rf"{path}: record 1: data CRC mismatch"):
        list(read_records(path, verify_crc=True))

    data = bytearray(path.read_bytes())
    data[12 + 5 + 4 + 2] ^= 0x01  # record 1's length field
    path.write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match=rf"{path}: record 1: length CRC mismatch"):
        list(read_records(path))

    write_records(path, [b"first", b"second record"], compression=None)
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(TFRecordError, match=rf"{path}: record 1: truncated data"):
        list(read_records(path))

    gz = tmp_path / "t.tfrecord.gz"
    write_records(gz, [b"a" * 1000, b"b" * 1000])
    gz.write_bytes(gz.read_bytes()[:-30])
    with pytest.raises(TFRecordError, match=rf"{gz}: record \d: "):
        list(read_records(gz))
    with pytest.raises(TFRecordError, match="no such file"):
        list(read_records(tmp_path / "nope.tfrecord"))


def test_example_and_sequence_example_round_trip():
    feats = {"b": feature(["x", b"\x00\xff"]), "f": feature([1.5, -2.0, 0.0]), "i": feature([0, -1, 2**62, -2**63]),
             "empty": Feature("int64", []), "unset": Feature(None, [])}
    ex = decode_example(encode_example(feats))
    assert ex.features == {"b": Feature("bytes", [b"x", b"\x00\xff"]), "f": Feature("float", [1.5, -2.0, 0.0]),
                           "i": Feature("int64", [0, -1, 2**62, -2**63]), "empty": Feature("int64", []),
                           "unset": Feature(None, [])}
    assert decode_example(encode_example(feats), keys=["f"]).features == {"f": Feature("float", [1.5, -2.0, 0.0])}

    ctx = {"split": "val", "n": 3}
    lists = {"title": [feature("a"), feature("b")], "urls": [feature([], kind="bytes"), feature(["u1", "u2"])],
             "flag": [feature(1), feature(0)]}
    se = decode_sequence_example(encode_sequence_example(ctx, lists))
    assert se.context == {"split": Feature("bytes", [b"val"]), "n": Feature("int64", [3])}
    assert se.feature_lists == {"title": [Feature("bytes", [b"a"]), Feature("bytes", [b"b"])],
                                "urls": [Feature("bytes", []), Feature("bytes", [b"u1", b"u2"])],
                                "flag": [Feature("int64", [1]), Feature("int64", [0])]}
    part = decode_sequence_example(encode_sequence_example(ctx, lists), ["split"], ["flag"])
    assert set(part.context) == {"split"} and set(part.feature_lists) == {"flag"}


def test_decoder_reads_unpacked_scalars_and_skips_unknown_fields():
    def varint(v):
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    def ld(num, payload):
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    int64_list = varint(1 << 3 | 0) + varint(5) + varint(1 << 3 | 0) + varint(7)  # unpacked
    float_list = (varint(1 << 3 | 5) + struct.pack("<f", 0.25))
    unknown = varint(9 << 3 | 0) + varint(42) + ld(10, b"junk") + varint(11 << 3 | 5) + b"\0\0\0\0"
    feat_i, feat_f = ld(3, int64_list) + unknown, ld(2, float_list)
    entry = lambda k, v: ld(1, ld(1, k) + ld(2, v))  # noqa: E731
    ex = decode_example(ld(1, entry(b"i", feat_i) + entry(b"f", feat_f)) + unknown)
    assert ex.features == {"i": Feature("int64", [5, 7]), "f": Feature("float", [0.25])}


def test_decoder_agrees_with_protobuf():
    """Cross-check against protobuf's own parser on the real tf.train schema (skipped without protobuf)."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="mmbench_test_example.proto", package="tensorflow",
                                             syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto

    def msg(name, fields, nested=()):
        m = fdp.message_type.add(name=name)
        for n in nested:
            m.nested_type.add().CopyFrom(n)
        for fname, num, ftype, label, tname, *rest in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
            if rest:
                f.oneof_index = rest[0]
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    msg("BytesList", [("value", 1, F.TYPE_BYTES, rep, "")])
    msg("FloatList", [("value", 1, F.TYPE_FLOAT, rep, "")])
    msg("Int64List", [("value", 1, F.TYPE_INT64, rep, "")])
    feat = msg("Feature", [("bytes_list", 1, F.TYPE_MESSAGE, opt, ".tensorflow.BytesList", 0),
                           ("float_list", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FloatList", 0),
                           ("int64_list", 3, F.TYPE_MESSAGE, opt, ".tensorflow.Int64List", 0)])
    feat.oneof_decl.add(name="kind")

    def map_entry(name, value_type):
        e = descriptor_pb2.DescriptorProto(name=name)
        e.options.map_entry = True
        e.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
        e.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=value_type)
        return e

    msg("Features", [("feature", 1, F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry")],
        [map_entry("FeatureEntry", ".tensorflow.Feature")])
    msg("FeatureList", [("feature", 1, F.TYPE_MESSAGE, rep, ".tensorflow.Feature")])
    msg("FeatureLists", [("feature_list", 1, F.TYPE_MESSAGE, rep, ".tensorflow.FeatureLists.FeatureListEntry")],
        [map_entry("FeatureListEntry", ".tensorflow.FeatureList")])
    msg("SequenceExample", [("context", 1, F.TYPE_MESSAGE, opt, ".tensorflow.Features"),
                            ("feature_lists", 2, F.TYPE_MESSAGE, opt, ".tensorflow.FeatureLists")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    SE = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.SequenceExample"))

    m = SE()
    m.context.feature["title"].bytes_list.value.extend([b"T", b"U"])
    m.context.feature["w"].float_list.value.extend([0.5, -3.25])
    m.context.feature["n"].int64_list.value.extend([-7, 1 << 40])
    fl = m.feature_lists.feature_list["parent"]
    fl.feature.add().int64_list.value.append(-1)
    fl.feature.add().int64_list.value.extend([])  # marks int64_list as set, with no values
    se = decode_sequence_example(m.SerializeToString())
    assert se.context == {"title": Feature("bytes", [b"T", b"U"]), "w": Feature("float", [0.5, -3.25]),
                          "n": Feature("int64", [-7, 1 << 40])}
    assert se.feature_lists == {"parent": [Feature("int64", [-1]), Feature("int64", [])]}  # an empty list is set

    ours = encode_sequence_example({"a": feature(["x"]), "b": feature([1.0]), "c": feature([-5])},
                                   {"s": [feature([1, 2]), feature(["y"])]})
    back = SE.FromString(ours)
    assert list(back.context.feature["a"].bytes_list.value) == [b"x"]
    assert list(back.context.feature["b"].float_list.value) == [1.0]
    assert list(back.context.feature["c"].int64_list.value) == [-5]
    assert [f.WhichOneof("kind") for f in back.feature_lists.feature_list["s"].feature] == ["int64_list", "bytes_list"]


def test_official_fixture_decodes_to_what_the_generator_encoded():
    gen = _gen()
    files = ww.official_files(WW / "official")
    assert [f.name for f in files] == [gen.FILES[k] for k in ("train0", "train1", "val", "test")]
    pages = list(ww.read_official_pages(files, verify_crc=True))
    spec = gen.pages()
    assert [p.page_id for p in pages] == list(range(len(spec)))
    for page, want in zip(pages, spec, strict=True):
        assert (page.title, page.url, page.description) == (want["title"], want["url"], want["description"])
        assert page.split == {"train": "train", "val": "valid", "test": "test"}[want["split"]]
        assert [(s.first_sentence, s.rest, s.parent, s.sample, s.depth) for s in page.sections] == \
            [(s["first"], s["rest"], s["parent"], s["sample"], s["depth"]) for s in want["sections"]]
        assert [[(i.url, i.caption) for i in s.images] for s in page.sections] == \
            [[(u, c) for u, c, _ in s["images"]] for s in want["sections"]]


def test_fixtures_match_their_generator(tmp_path):
    """make_fixtures.py reproduces the committed files (records, tables and pickles compared by content, since
    gzip, parquet and image encoders may differ in bytes across library versions)."""
    import pyarrow.parquet as pq

    gen = _gen()
    gen.write_official(tmp_path / "official")
    gen.write_mmgl(tmp_path / "mmgl")
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(WW) for p in WW.rglob("*") if p.is_file() and p.suffix != ".py"
                       and "__pycache__" not in p.parts)
    assert made == committed
    for rel in made:
        if rel.parts[0] == "official":
            assert list(read_records(tmp_path / rel)) == list(read_records(WW / rel)), rel
        elif rel.suffix == ".parquet":
            assert pq.read_table(tmp_path / rel).equals(pq.read_table(WW / rel)), rel
        elif rel.suffix == ".pkl":
            assert ww.read_split_pickle(tmp_path / rel) == ww.read_split_pickle(WW / rel)


# ------------------------------------------------------------------------------------------ prepare
def test_prepare_official_layout(env, tmp_path):
    card = _card(tmp_path, sample_pages=0)
    manifest = prepare_task_data(card, WW / "official")
    d = env.data / "wikiweb-gen"
    assert sorted(p.name for p in d.iterdir()) == ["MANIFEST.json", *sorted(ww.PAGE_FILES.values())]
    assert _manifest(env) == json.loads(json.dumps(manifest, default=str))
    assert manifest["format"] == ww.FORMAT and manifest["source_format"] == "official"
    ids = manifest["sampling"]["page_ids"]
    # page 4 (delta) lies in a train shard but its split field says test; page 3 has no sample
    assert ids == {"train": [0, 1, 2], "valid": [5, 6], "test": [4, 7]}
    assert manifest["sampling"]["page_ids_sha256"]["test"] == sha256_hex("4\n7\n")
    assert manifest["sampling"]["eligible_pages"] == {"train": 3, "valid": 2, "test": 2}
    assert manifest["sampling"]["pages_in_source"] == {"train": 4, "valid": 2, "test": 2}
    assert manifest["stats"]["test"] == {"pages": 2, "sections": 4, "samples": 3}
    assert manifest["stats"]["images"] == {"urls": 16, "found": 0, "missing": 16, "unreadable": 0, "unchecked": 0,
                                           "sections_with_image": 0}
    assert any("image URLs only" in n for n in manifest["notes"])
    # the compact format: one JSON object per page, ascending page_id
    with gzip.open(d / "pages-test.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    assert [r["page_id"] for r in rows] == [4, 7] and {r["split"] for r in rows} == {"test"}
    assert rows[1]["sections"][0]["images"] == [{"url": rows[1]["sections"][0]["images"][0]["url"],
                                                 "caption": "A couple dancing the foxtrot", "status": "missing",
                                                 "file": None}]
    task = load_task_data(card)
    g = task.graph
    delta = [n for n in g.splits["test"].tolist() if int(g.groups[n]) == g.meta["page_ids"].index(4)]
    assert len(delta) == 2 and all(g.kinds[n] == "section" for n in delta)
    assert {task.assemble(n).id for n in delta} == {"4_0", "4_1"}
    assert g.stats()["with_image"] == 0
    assert data_status(card) == (True, f"prepared at {d}")


def test_prepare_mmgl_layout_counts_images(env, tmp_path):
    card = _card(tmp_path, sample_pages=0)
    manifest = prepare_task_data(card, WW / "mmgl")
    assert manifest["source_format"] == "mmgl"
    assert manifest["sampling"]["page_ids"] == {"train": [0, 1, 2], "valid": [5, 6], "test": [4, 7]}
    # 16 URLs: 12 usable (one per section), 2 missing (alpha 2_0, foxtrot 0_0), 2 corrupt (bravo 0_0, 2_0)
    assert manifest["stats"]["images"] == {"urls": 16, "found": 12, "missing": 2, "unreadable": 2, "unchecked": 0,
                                           "sections_with_image": 12}
    images = sorted(p.name for p in (env.data / "wikiweb-gen" / "images").iterdir())
    assert "0_2_1.jpg" in images and "1_0_1.png" in images  # the first usable image of the section
    assert not {"0_2_0.png", "1_0_0.png", "1_2_0.png"} & set(images) and len(images) == 12
    assert manifest["images"]["count"] == 12
    assert any("split by page index" in n for n in manifest["notes"])
    g = load_task_data(card).graph
    assert g.stats()["with_image"] == 12


def test_prepare_accepts_mini_variant_link_and_official_with_image_folder(env, tmp_path):
    mini = tmp_path / "graph4mm" / "wikiweb2m" / "raw"
    mini.mkdir(parents=True)
    for s in ("train", "val", "test"):
        shutil.copy(WW / "mmgl" / f"wikiweb2m_{s}_large.parquet", mini / f"wikiweb2m_{s}_large_mini.parquet")
    shutil.copy(WW / "mmgl" / "section_id_split_large.pkl", mini / "section_id_split_large_mini.pkl")
    shutil.copytree(WW / "mmgl" / "images", mini / "images_mini")
    card = _card(tmp_path, sample_pages=0)
    m = prepare_task_data(card, tmp_path / "graph4mm", link=True)
    assert m["source_files"]["variant"] == "large_mini" and m["stats"]["images"]["found"] == 12
    linked = env.data / "wikiweb-gen" / "images" / "0_0_0.jpg"
    assert linked.is_symlink() and linked.resolve() == (mini / "images_mini" / "0_0_0.jpg").resolve()

    off = tmp_path / "official-with-images"
    shutil.copytree(WW / "official", off)
    shutil.copytree(WW / "mmgl" / "images", off / "images")
    m2 = prepare_task_data(card, off)
    assert m2["source_format"] == "official" and m2["stats"]["images"] == m["stats"]["images"]


def test_sample_is_seeded_proportional_and_format_independent(env, tmp_path):
    card = _card(tmp_path, sample_pages=4)
    first = prepare_task_data(card, WW / "official")["sampling"]
    # 7 eligible pages (3 train, 2 valid, 2 test): 4 -> 2 / 1 / 1 (largest remainder)
    assert {s: len(v) for s, v in first["page_ids"].items()} == {"train": 2, "valid": 1, "test": 1}
    assert prepare_task_data(card, WW / "official")["sampling"] == first
    assert prepare_task_data(card, WW / "mmgl")["sampling"]["page_ids"] == first["page_ids"]  # keyed by URL
    refs = list(ww.OfficialSource(ww.official_files(WW / "official"), None).index())
    assert ww.sample_pages(refs, 4, 0) == first["page_ids"]
    others = [ww.sample_pages(refs, 4, seed) for seed in range(1, 8)]
    assert any(o != first["page_ids"] for o in others)
    other_seed = next(s for s in range(1, 8) if ww.sample_pages(refs, 4, s) != first["page_ids"])
    m = prepare_task_data(_card(tmp_path, sample_pages=4, sample_seed=other_seed), WW / "official")
    assert m["sampling"]["page_ids"] != first["page_ids"] and m["params"]["sample_seed"] == other_seed
    assert ww.quotas({"train": 90, "valid": 5, "test": 5}, 10) == {"train": 8, "valid": 1, "test": 1}
    assert ww.quotas({"train": 3, "valid": 0, "test": 2}, 0) == {"train": 3, "valid": 0, "test": 2}


def test_prepare_errors(env, tmp_path):
    card = _card(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        prepare_task_data(card, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found neither the official WikiWeb2M TFRecords"):
        prepare_task_data(card, tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    write_records(bad / "wikiweb2m-val.tfrecord.gz", [b"\xff\xff\xff"])
    with pytest.raises(DataError, match=r"wikiweb2m-val.tfrecord.gz: record 0: not a valid SequenceExample"):
        prepare_task_data(card, bad)
    assert not (env.data / "wikiweb-gen").exists()  # staged: nothing half-written
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(shutil.rmtree))
    with pytest.raises(DataError, match="refusing to load shutil.rmtree"):
        ww.read_split_pickle(evil)


# ------------------------------------------------------------------------------------------ loader
def test_loading_without_data_says_what_to_do(env):
    card = get_card("wikiweb-gen")
    assert data_status(card) == (False, "not prepared (run: mmbench data prepare wikiweb-gen --from DIR)")
    with pytest.raises(DataError) as e:
        load_task_data(card)
    msg = str(e.value)
    assert "mmbench data prepare wikiweb-gen --from" in msg
    assert "WikiWeb2M" in msg and "google-research-datasets/wit" in msg and "MMGL" in msg


def test_card_is_valid():
    card = get_card("wikiweb-gen")
    assert card.family == "generation" and card.dataset["loader"] == "wikiweb"
    assert card.splits == ("train", "valid", "test") and card.main_metric == "cider"
    assert ww.params_of(card) == ww.DEFAULTS
    assert card.protocol["valid_limit"] == 200 and card.protocol["max_new_tokens"] == 32


def test_verification_against_the_manifest(env, tmp_path):
    prepare_task_data(_card(tmp_path, sample_pages=0), WW / "official")
    other = _card(tmp_path, sample_pages=0, sample_seed=3)
    with pytest.raises(DataError, match="prepared with .*'sample_seed': 0.*the card asks for"):
        load_task_data(other)
    task = load_task_data(other, verify=False)
    assert not task.verified and "sample_seed" in task.notes[-1]
    (env.data / "wikiweb-gen" / "pages-test.jsonl.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="pages-test.jsonl.gz differs"):
        load_task_data(_card(tmp_path, sample_pages=0))


def test_graph_of_a_hand_checked_page(env, tmp_path):
    card = _card(tmp_path, sample_pages=0)
    prepare_task_data(card, WW / "mmgl")
    task = load_task_data(card)
    g = task.graph
    alpha = [n for n in range(g.num_nodes) if int(g.groups[n]) == g.meta["page_ids"].index(0)]
    kinds = [g.kinds[n] for n in alpha]
    # page, 4 sections, images of sections 0 and 2 (section 2: the second URL, the first is missing)
    assert kinds == ["page", "section", "section", "section", "section", "image", "image"]
    page, s0, s1, s2, s3, i0, i2 = alpha
    assert g.texts[page] == "Alpha, Alpha is a small village in the north. It has two churches and a mill."
    assert g.texts[s1] == "It grew around the mill. A market charter followed in 1250."  # rest only, normalised
    assert g.targets[s1] == "The village was first recorded in 1086."
    assert g.images[i2].endswith("images/0_2_1.jpg") and g.texts[i2] == "A museum case of flint tools"
    mine = (g.edge_index[0].unsqueeze(1) == torch.tensor(alpha)).any(1)
    pairs = {(int(u), int(v), g.edge_type_names[int(t)])
             for u, v, t in zip(g.edge_index[0][mine], g.edge_index[1][mine], g.edge_type[mine], strict=True)}
    und = {(min(u, v), max(u, v), t) for u, v, t in pairs}
    assert len(pairs) == int(mine.sum()) == 2 * len(und)  # both directions, no duplicates
    assert und == {(page, s, "text-text") for s in (s0, s1, s2, s3)} | {
        (s0, s1, "text-text"), (s1, s2, "text-text"), (s2, s3, "text-text"),  # order chain
        (s0, s3, "text-text"),  # hierarchy: Geography -> root (History -> root and Early -> History are chain edges)
        (s0, i0, "text-image"), (s2, i2, "text-image"), (i0, i2, "image-image")}
    train = set(g.splits["train"].tolist())
    assert {s0, s1, s3} <= train and s2 not in train
    assert {k: int(v.numel()) for k, v in g.splits.items()} == {"train": 12, "valid": 3, "test": 3}


def _all_samples(task):
    for split, nodes in task.graph.splits.items():
        for n in nodes.tolist():
            yield split, n, task.assemble(n)


@pytest.mark.parametrize("source", ["official", "mmgl"])
def test_assembly_never_shows_the_answer(env, tmp_path, source):
    card = _card(tmp_path, sample_pages=0)
    prepare_task_data(card, WW / source)
    task = load_task_data(card)
    g = task.graph
    count = 0
    for _, n, sample in _all_samples(task):
        answer = g.targets[n]
        assert answer and all(answer not in (node.text or "") for node in sample.nodes), sample.id
        assert sample.nodes[0].kind == "section" and sample.nodes[0].hop == 0
        assert sample.nodes[0].text == (g.texts[n] or "")[:2048]
        assert sample.edge_index.shape[0] == 2 and sample.edge_index.shape[1] == sample.edge_type.numel()
        if sample.edge_index.numel():
            assert int(sample.edge_index.min()) >= 0 and int(sample.edge_index.max()) < len(sample.nodes)
        assert all(node.hop >= 1 for node in sample.nodes[1:])
        count += 1
    assert count == 18
    s = task.assemble(g.splits["train"][0].item())  # alpha, root section
    texts = [node.text for node in s.nodes]
    assert s.id == "0_0" and s.nodes[1].kind == "page"
    assert texts[1] == "Alpha, It has two churches and a mill."  # the repeated target sentence is cut out
    # other sections bring their first sentence (context, same page, same split)
    assert "The village was first recorded in 1086., It grew around the mill. A market charter followed in 1250." \
        in texts
    if source == "mmgl":
        assert s.nodes[2].kind == "image" and s.nodes[2].image.endswith("0_0_0.jpg")  # the target's own image
    # without the guard, the page description would give the answer away
    raw_card = _card(tmp_path, sample_pages=0, scrub_target_sentence=False)
    s2 = load_task_data(raw_card).assemble(g.splits["train"][0].item())
    assert g.targets[g.splits["train"][0].item()] in s2.nodes[1].text


def test_assembly_limits(env, tmp_path):
    card = _card(tmp_path, sample_pages=0)
    prepare_task_data(card, WW / "mmgl")
    task = load_task_data(card)
    g = task.graph
    hotel = g.meta["page_ids"].index(2)
    targets = [n for n in g.splits["train"].tolist() if int(g.groups[n]) == hotel]
    assert len(targets) == 8
    for n in targets:
        s = task.assemble(n)
        with_text = [x for x in s.nodes[1:] if x.text]
        with_image = [x for x in s.nodes if x.image]
        assert len(with_text) == 11 and len(with_image) == 5, s.id  # 13 other sections, 8 images: both bind
        assert [x.kind for x in s.nodes[:2]] == ["section", "page"]
    tight = _card(tmp_path, sample_pages=0, max_text_neighbors=3, max_image_neighbors=2, max_node_chars=25,
                  max_sample_chars=70)
    t2 = load_task_data(tight)
    for _, _, s in _all_samples(t2):
        assert len([x for x in s.nodes[1:] if x.text]) <= 3
        assert len([x for x in s.nodes if x.image]) <= 2
        assert all(len(x.text or "") <= 25 for x in s.nodes)
        assert sum(len(x.text or "") for x in s.nodes) <= 70
        if s.edge_index.numel():
            assert int(s.edge_index.max()) < len(s.nodes)


def test_context_targets_keep_vs_scrub(env, tmp_path):
    """keep (default, the published protocol): a valid/test sample's context holds the other sections' first
    sentences, i.e. other held-out answers of the same page; scrub removes every one of them."""
    card = _card(tmp_path, sample_pages=0)
    prepare_task_data(card, WW / "mmgl")
    keep = load_task_data(card)
    g = keep.graph
    held = {int(n) for s in ("valid", "test") for n in g.splits[s]}
    held_answers = {g.targets[n] for n in held}

    def leaked(task, n):
        return {a for a in held_answers for node in task.assemble(n).nodes if a and a in (node.text or "")}

    assert any(leaked(keep, n) for n in held), "the fixture should show the published protocol's leak"
    scrub = load_task_data(_card(tmp_path, sample_pages=0, context_targets="scrub"))
    assert all(not leaked(scrub, n) for n in held)
    # training samples keep their (training) context sentences either way
    train = g.splits["train"][0].item()
    assert [x.text for x in scrub.assemble(train).nodes] == [x.text for x in keep.assemble(train).nodes]
    assert scrub.graph.meta["context_targets"] == "scrub" and keep.graph.meta["context_targets"] == "keep"
    with pytest.raises(ConfigError, match="context_targets must be keep or scrub"):
        load_task_data(_card(tmp_path, sample_pages=0, context_targets="drop"))
