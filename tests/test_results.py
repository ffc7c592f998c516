"""Result records: atomic writes, supersede on --force, unreadable files, run keys."""

from __future__ import annotations

import json
import os
import stat

import pytest

from mmbench import io as mio
from mmbench.io import atomic_write_json, atomic_write_jsonl_gz, read_jsonl_gz
from mmbench.results import ResultRecord, ResultStore, run_key


def record(key: str, task: str = "nations", model: str = "distmult", mrr: float = 0.5) -> ResultRecord:
    return ResultRecord(run_key=key, task={"name": task}, model={"name": model},
                        metrics={"test": {"both.realistic.mrr": mrr}}, seed=0)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    atomic_write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert os.listdir(path.parent) == ["x.json"]
    atomic_write_jsonl_gz(tmp_path / "s.jsonl.gz", [{"a": 1}, {"a": 2}])
    assert read_jsonl_gz(tmp_path / "s.jsonl.gz") == [{"a": 1}, {"a": 2}]
    assert sorted(os.listdir(tmp_path)) == ["s.jsonl.gz", "sub"]


def test_failed_atomic_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"v": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(mio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_samples_gzip_bytes_are_stable(tmp_path):
    rows = [{"h": 1, "r": 2, "t": 3, "side": "head"}]
    atomic_write_jsonl_gz(tmp_path / "a.gz", rows)
    atomic_write_jsonl_gz(tmp_path / "b.gz", rows)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_twice_supersedes_never_deletes(tmp_path):
    store = ResultStore(tmp_path)
    first = store.write(record("k1", mrr=0.1), samples=[{"side": "head", "rank_opt": 1.0}])
    assert first == tmp_path / "nations" / "distmult" / "k1.json"
    assert (first.parent / "k1.samples.jsonl.gz").exists()
    assert json.loads(first.read_text())["samples_file"] == "k1.samples.jsonl.gz"
    second = store.write(record("k1", mrr=0.2))
    assert second == first
    assert json.loads(second.read_text())["metrics"]["test"]["both.realistic.mrr"] == 0.2
    old = sorted((first.parent / "superseded").iterdir())
    assert len(old) == 2
    old_json = [p for p in old if p.name.endswith(".json")]
    old_samples = [p for p in old if p.name.endswith(".samples.jsonl.gz")]
    assert len(old_json) == 1 and old_json[0].name.startswith("k1.")
    assert json.loads(old_json[0].read_text())["metrics"]["test"]["both.realistic.mrr"] == 0.1
    assert len(old_samples) == 1 and read_jsonl_gz(old_samples[0]) == [{"side": "head", "rank_opt": 1.0}]
    # the new record wrote no samples, so none is current
    assert not (first.parent / "k1.samples.jsonl.gz").exists()
    # iter_records sees only the current record
    assert [(p.name, r.test("both.realistic.mrr")) for p, r in store.iter_records()] == [("k1.json", 0.2)]
    store.write(record("k1", mrr=0.3))
    assert len(list((first.parent / "superseded").glob("*.json"))) == 2


def test_find(tmp_path):
    store = ResultStore(tmp_path)
    assert store.find("nations", "distmult", "k1") is None
    store.write(record("k1"))
    assert store.find("nations", "distmult", "k1").run_key == "k1"


def test_unreadable_record_is_named_skipped_and_kept(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.write(record("good"))
    bad = tmp_path / "nations" / "distmult" / "bad.json"
    bad.write_text('{"run_key": "bad", "metr')
    not_record = tmp_path / "nations" / "notes.json"
    not_record.write_text('{"hello": 1}')
    keys = [r.run_key for _, r in store.iter_records()]
    assert keys == ["good"]
    err = capsys.readouterr().err
    assert f"warning: skipping unreadable result file {bad}" in err
    assert f"warning: skipping unreadable result file {not_record}: not an mmbench result record" in err
    assert bad.read_text() == '{"run_key": "bad", "metr'
    assert not_record.exists()
    # find() on a corrupt record warns and reports nothing (the job is recomputed)
    assert store.find("nations", "distmult", "bad") is None
    assert str(bad) in capsys.readouterr().err
    assert bad.exists()


def test_iter_records_on_missing_root(tmp_path):
    assert list(ResultStore(tmp_path / "nothing").iter_records()) == []


def test_record_path_sanitises_names(tmp_path):
    store = ResultStore(tmp_path)
    assert store.record_path("t", "/abs/my file.py:Cls", "k") == tmp_path / "t" / "_abs_my_file.py_Cls" / "k.json"


def test_run_key():
    base = run_key("distmult", {"dim": 8, "lr": 0.1}, "fp", 0)
    assert len(base) == 20
    assert run_key("distmult", {"lr": 0.1, "dim": 8}, "fp", 0) == base  # key order does not matter
    assert run_key("distmult", {"dim": 8, "lr": 0.2}, "fp", 0) != base
    assert run_key("distmult", {"dim": 8, "lr": 0.1}, "fp2", 0) != base
    assert run_key("distmult", {"dim": 8, "lr": 0.1}, "fp", 1) != base
    assert run_key("tucker", {"dim": 8, "lr": 0.1}, "fp", 0) != base


def test_results_root_under_a_folder_named_superseded(tmp_path):
    store = ResultStore(tmp_path / "superseded" / "results")
    store.write(record("k1"))
    assert [r.run_key for _, r in store.iter_records()] == ["k1"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        atomic_write_jsonl_gz(tmp_path / "s.jsonl.gz", [{"a": 1}])
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "s.jsonl.gz").stat().st_mode) == mode
