"""End to end through ``mmbench.cli.main``: eval, reuse, --force, samples, leaderboard, checkpoints,
errors, unverified data, validate-adapter."""

from __future__ import annotations

import json
import textwrap
from importlib.metadata import version

import pytest
from conftest import unpadded

from mmbench.cli import main
from mmbench.io import read_jsonl_gz

FAST = ["--set", "epochs=2", "--set", "eval_every=1", "--quiet"]
NATIONS = ["eval", "--model", "distmult", "--task", "nations", *FAST]


def records(root, task="nations", model="distmult"):
    d = root / task / model
    return sorted(d.glob("*.json")) if d.exists() else []


def test_eval_writes_one_complete_record(env, capsys):
    assert main(NATIONS) == 0
    out = capsys.readouterr().out
    files = records(env.results)
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    assert files[0].name == f"{rec['run_key']}.json"
    assert out.startswith("distmult on nations (seed 0)\n")
    assert f"record: {files[0]}" in out

    assert rec["schema"] == 1
    assert rec["model"]["name"] == "distmult"
    assert rec["model"]["class"] == "baselines.one_to_all:DistMult"
    from dataclasses import asdict

    from baselines.one_to_all import OneToAllConfig

    assert rec["model"]["config"] == {**asdict(OneToAllConfig()), "epochs": 2, "eval_every": 1}
    assert set(rec["model"]["config"]) == {"epochs", "eval_every", "patience", "eval_batch_size", "dim", "lr",
                                           "batch_size", "label_smoothing", "input_dropout"}
    assert rec["model"]["overrides"] == {"epochs": 2, "eval_every": 1}
    assert rec["model"]["num_parameters"] == (14 + 2 * 55) * 128  # entity + reciprocal relation tables

    task = rec["task"]
    assert task["name"] == "nations" and task["version"] == 1 and task["family"] == "kgc"
    assert len(task["card_hash"]) == len(task["data_hash"]) == len(task["fingerprint"]) == 64
    from mmbench.data import load_task_data
    from mmbench.tasks import get_card
    card = get_card("nations")
    assert task["card_hash"] == card.card_hash
    assert task["data_hash"] == load_task_data(card).data_hash()
    assert task["fingerprint"] == card.fingerprint(task["data_hash"])
    assert task["data_verified"] is True
    assert task["stats"] == {"entities": 14, "relations": 55, "train": 1592, "valid": 199, "test": 201}

    assert rec["seed"] == 0
    assert rec["main_metric"] == "both.realistic.mrr"
    assert rec["headline_metrics"] == ["both.realistic.mrr", "both.realistic.mr", "both.realistic.hits@1",
                                       "both.realistic.hits@3", "both.realistic.hits@10"]
    for split in ("valid", "test"):
        m = rec["metrics"][split]
        assert 0 < m["both.realistic.mrr"] <= 1
        assert 1 <= m["both.realistic.mr"] <= 14
        assert 0 <= m["both.realistic.hits@1"] <= m["both.realistic.hits@3"] <= m["both.realistic.hits@10"] <= 1
    history = rec["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all("valid" in h and h["loss"] > 0 for h in history)
    sel = rec["training"]["selection"]
    assert sel["metric"] == "valid/both.realistic.mrr" and sel["checks"] == 2
    best = max(history, key=lambda h: h["valid"])
    assert sel["epoch"] == best["epoch"]
    assert rec["metrics"]["valid"]["both.realistic.mrr"] == pytest.approx(sel["value"])
    assert rec["protocol"]["filtered"] is True and rec["protocol"]["rank_type"] == "realistic"

    prov = rec["provenance"]
    assert prov["libraries"]["torch"] == version("torch")
    assert prov["libraries"]["pykeen"] == version("pykeen")
    assert prov["mmbench_version"] == version("mmbench")
    assert "python" in prov and "hardware" in prov and "git" in prov
    assert rec["samples_file"] is None


def test_second_eval_reuses_the_record(env, capsys):
    assert main(NATIONS) == 0
    [path] = records(env.results)
    stat = path.stat()
    capsys.readouterr()
    assert main(NATIONS[:-1]) == 0  # without --quiet: the reuse is explained on stderr
    captured = capsys.readouterr()
    assert "distmult on nations (seed 0) [existing record]" in captured.out
    assert f"result exists: {path}" in captured.err and "pass --force to recompute" in captured.err
    assert records(env.results) == [path]
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_ino == stat.st_ino
    assert not (path.parent / "superseded").exists()


def test_force_supersedes(env, capsys):
    assert main(NATIONS) == 0
    [path] = records(env.results)
    first = json.loads(path.read_text())
    assert main([*NATIONS, "--force"]) == 0
    assert "[existing record]" not in capsys.readouterr().out
    assert records(env.results) == [path]
    old = list((path.parent / "superseded").glob("*.json"))
    assert len(old) == 1 and old[0].name.startswith(path.stem + ".")
    assert json.loads(old[0].read_text()) == first
    second = json.loads(path.read_text())
    assert second["run_key"] == first["run_key"]
    assert second["metrics"] == first["metrics"]  # same seed, same numbers


def test_log_samples(env):
    assert main([*NATIONS, "--log-samples"]) == 0
    [path] = records(env.results)
    rec = json.loads(path.read_text())
    assert rec["samples_file"] == f"{rec['run_key']}.samples.jsonl.gz"
    rows = read_jsonl_gz(path.parent / rec["samples_file"])
    assert len(rows) == 2 * 201
    assert sorted({r["side"] for r in rows}) == ["head", "tail"]
    assert sum(r["side"] == "head" for r in rows) == 201
    assert set(rows[0]) == {"h", "r", "t", "side", "rank_opt", "rank_pess"}
    assert all(1 <= r["rank_opt"] <= r["rank_pess"] <= 14 for r in rows)
    # the logged ranks reproduce the recorded metrics (realistic rank = mean of optimistic and pessimistic)
    test = rec["metrics"]["test"]
    realistic = [(r["rank_opt"] + r["rank_pess"]) / 2 for r in rows]
    assert test["both.realistic.mrr"] == pytest.approx(sum(1 / x for x in realistic) / len(rows))
    assert test["both.optimistic.mr"] == pytest.approx(sum(r["rank_opt"] for r in rows) / len(rows))
    tails = [x for x, r in zip(realistic, rows, strict=True) if r["side"] == "tail"]
    assert test["tail.realistic.hits@3"] == pytest.approx(sum(x <= 3 for x in tails) / 201)
    # one head and one tail row per test triple
    from mmbench.data import load_task_data
    from mmbench.tasks import get_card
    triples = sorted(map(tuple, load_task_data(get_card("nations")).test.tolist()))
    for side in ("head", "tail"):
        assert sorted((r["h"], r["r"], r["t"]) for r in rows if r["side"] == side) == triples


def test_seeds_and_leaderboard(env, capsys):
    assert main([*NATIONS, "--seed", "0-1"]) == 0
    recs = [json.loads(p.read_text()) for p in records(env.results)]
    assert sorted(r["seed"] for r in recs) == [0, 1]
    assert len({r["run_key"] for r in recs}) == 2
    capsys.readouterr()
    assert main(["leaderboard"]) == 0
    out = capsys.readouterr().out
    page, index = env.leaderboard / "nations.md", env.leaderboard / "README.md"
    chart = env.leaderboard / "charts" / "nations.png"
    assert out.splitlines() == [f"wrote {page}", f"wrote {chart}", f"wrote {index}"]
    text = page.read_text()
    assert text.startswith("# nations\n\nNations (14 countries, 55 relations)")
    row = next(line for line in text.splitlines() if line.startswith("| distmult"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "distmult [epochs=2, eval_every=1]"
    assert cells[1] == "2"
    assert " ± " in cells[2]
    assert cells[-1] == "15,872"
    assert "| distmult [epochs=2, eval_every=1] | **0.3" in unpadded(index.read_text())


def test_leaderboard_without_records(env, capsys):
    assert main(["leaderboard"]) == 1
    assert "no result records under" in capsys.readouterr().out
    assert not env.leaderboard.exists()


def test_checkpoint_roundtrip(env, tmp_path):
    ckpt = tmp_path / "ckpt" / "distmult.pt"
    assert main([*NATIONS, "--save-checkpoint", str(ckpt)]) == 0
    assert ckpt.exists()
    [first_path] = records(env.results)
    assert main([*NATIONS, "--checkpoint", str(ckpt)]) == 0
    paths = records(env.results)
    assert len(paths) == 2  # the checkpoint's hash is part of the run key
    second = json.loads(next(p for p in paths if p != first_path).read_text())
    first = json.loads(first_path.read_text())
    assert second["training"]["selection"]["reason"] == "checkpoint given"
    assert second["training"]["history"] == []
    assert second["model"]["checkpoint"] == str(ckpt)
    assert second["metrics"]["test"] == pytest.approx(first["metrics"]["test"])


# ------------------------------------------------------------------------------------------ errors
def test_unknown_model(env, capsys):
    assert main(["eval", "--model", "distmul", "--task", "nations", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'distmul'. Did you mean 'distmult'?")
    assert not env.results.exists()


def test_unknown_set_key(env, capsys):
    assert main(["eval", "--model", "distmult", "--task", "nations", "--set", "epoch=2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model distmult: unknown config key 'epoch' (from --set). Did you mean 'epochs'?" in err
    assert not env.results.exists()


def test_bad_set_value(capsys):
    assert main(["eval", "--model", "distmult", "--task", "nations", "--set", "epochs=abc", "--quiet"]) == 2
    assert "epochs must be an integer, got 'abc'" in capsys.readouterr().err
    assert main(["eval", "--model", "distmult", "--task", "nations", "--set", "epochs", "--quiet"]) == 2
    assert "--set 'epochs': expected key=value" in capsys.readouterr().err


def test_missing_dataset(env, capsys):
    assert main(["eval", "--model", "distmult", "--task", "db15k", *FAST]) == 2
    err = capsys.readouterr().err
    assert "task db15k: missing train.txt, valid.txt, test.txt" in err
    assert "mmbench data prepare db15k --from DIR" in err
    assert not env.results.exists()


def test_unverified_fixture_data_end_to_end(env, install_fixture, capsys):
    install_fixture("db15k")
    db15k = ["eval", "--model", "distmult", "--task", "db15k", *FAST]
    assert main(db15k) == 2
    err = capsys.readouterr().err
    assert "does not match the published statistics (entities: found 40, published 12,842;" in err
    assert "--unverified-data" in err
    assert not env.results.exists()

    assert main([*db15k, "--unverified-data"]) == 0
    [path] = records(env.results, "db15k")
    rec = json.loads(path.read_text())
    assert rec["task"]["data_verified"] is False
    assert rec["task"]["stats"] == {"entities": 40, "relations": 6, "train": 150, "valid": 20, "test": 20}
    assert "published 12,842" in rec["task"]["notes"][0]
    assert rec["task"]["modalities"]["tokens.image"]["coverage"] == pytest.approx(35 / 40)
    assert 0 < rec["metrics"]["test"]["both.realistic.mrr"] <= 1
    assert rec["model"]["num_parameters"] == (40 + 2 * 6) * 128

    capsys.readouterr()
    assert main(["leaderboard"]) == 1  # the only record is unverified
    out = capsys.readouterr().out
    assert "note: 1 record(s) on unverified data left out (use --include-unverified)" in out
    assert not (env.leaderboard / "db15k.md").exists()
    assert main(["leaderboard", "--include-unverified"]) == 0
    assert "| distmult [epochs=2, eval_every=1] | 1 |" in unpadded((env.leaderboard / "db15k.md").read_text())


def test_results_dir_option(env, tmp_path):
    other = tmp_path / "elsewhere"
    assert main([*NATIONS, "--results-dir", str(other)]) == 0
    assert len(records(other)) == 1 and not env.results.exists()
    out = tmp_path / "lb-elsewhere"
    assert main(["leaderboard", "--results-dir", str(other), "--out", str(out)]) == 0
    assert (out / "nations.md").exists() and not env.leaderboard.exists()


# ------------------------------------------------------------------------------------------ adapters
ADAPTERS = textwrap.dedent('''
    import random
    import time

    import torch
    from torch import nn

    from mmbench.api import KGCModel


    class Tiny(KGCModel):
        """A DistMult-like scorer with random, untrained embeddings derived from the seed."""

        def init_generator(self, seed):
            return torch.Generator().manual_seed(seed)

        def setup(self, data, seed):
            g = self.init_generator(seed)
            self.module = nn.ParameterDict({
                "ent": nn.Parameter(torch.randn(data.num_entities, 4, generator=g)),
                "rel": nn.Parameter(torch.randn(data.num_relations, 4, generator=g)),
            })

        def train_epoch(self, epoch):
            return 1.0 / epoch

        def score_tails(self, heads, relations):
            m = self.module
            return (m["ent"][heads] * m["rel"][relations]) @ m["ent"].t()

        def score_heads(self, relations, tails):
            m = self.module
            return (m["ent"][tails] * m["rel"][relations]) @ m["ent"].t()


    class WrongShape(Tiny):
        def score_tails(self, heads, relations):
            out = super().score_tails(heads, relations)
            return torch.cat([out, out[:, :1]], 1)  # one column too many


    class NaNScores(Tiny):
        def score_heads(self, relations, tails):
            out = super().score_heads(relations, tails)
            out[0, 0] = float("nan")
            return out


    class Nondeterministic(Tiny):
        def init_generator(self, seed):
            # ignores the seed: an unseeded RNG mixed with the clock
            return torch.Generator().manual_seed(random.Random().getrandbits(32) ^ time.time_ns() % 2**32)


    class IntScores(Tiny):
        def score_tails(self, heads, relations):
            return super().score_tails(heads, relations).round().long()
''')


@pytest.fixture
def adapters(tmp_path):
    path = tmp_path / "user_adapters.py"
    path.write_text(ADAPTERS)
    return path


def validate(capsys, *argv):
    rc = main(["validate-adapter", *argv])
    return rc, capsys.readouterr().out.splitlines()


def test_validate_builtin_adapter(capsys):
    rc, lines = validate(capsys, "distmult", "--task", "nations")
    assert rc == 0
    passes = [line for line in lines if line.startswith("PASS  ")]
    assert [p.split(":")[0] for p in passes] == [
        "PASS  resolve model and task", "PASS  build config", "PASS  load task data",
        "PASS  setup and train one epoch", "PASS  output shapes, dtype, NaN", "PASS  determinism under a seed"]
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1] == "adapter OK"


def test_validate_user_adapter_ok(capsys, adapters):
    rc, lines = validate(capsys, f"{adapters}:Tiny", "--task", "nations")
    assert rc == 0, lines
    assert sum(line.startswith("PASS") for line in lines) == 6


def test_validate_wrong_shape(capsys, adapters):
    rc, lines = validate(capsys, f"{adapters}:WrongShape", "--task", "nations")
    assert rc == 1
    [fail] = [line for line in lines if line.startswith("FAIL")]
    assert fail.startswith("FAIL  output shapes, dtype, NaN: WrongShape.score_tails (batch 0, valid split): "
                           "returned shape (8, 15), expected (B=8, num_entities=14)")
    assert sum(line.startswith("PASS") for line in lines) == 4
    assert lines[-1] == "adapter has problems (see FAIL above)"


def test_validate_nan(capsys, adapters):
    rc, lines = validate(capsys, f"{adapters}:NaNScores", "--task", "nations")
    assert rc == 1
    [fail] = [line for line in lines if line.startswith("FAIL")]
    assert "NaNScores.score_heads" in fail and "1 of 8 score rows contain NaN" in fail


def test_validate_int_scores(capsys, adapters):
    rc, lines = validate(capsys, f"{adapters}:IntScores", "--task", "nations")
    assert rc == 1
    assert any(line.startswith("FAIL") and "returned dtype torch.int64, expected a floating-point tensor" in line
               for line in lines)


def test_validate_nondeterministic(capsys, adapters):
    rc, lines = validate(capsys, f"{adapters}:Nondeterministic", "--task", "nations")
    assert rc == 1
    assert sum(line.startswith("PASS") for line in lines) == 5
    [fail] = [line for line in lines if line.startswith("FAIL")]
    assert fail.startswith("FAIL  determinism under a seed: two runs with seed 0 differ by up to")
    assert "derive all randomness" in fail


def test_validate_unknown_model(capsys):
    rc, lines = validate(capsys, "distmul", "--task", "nations")
    assert rc == 1
    assert lines[0].startswith("FAIL  resolve model and task: unknown model 'distmul'. Did you mean 'distmult'?")
    assert len([line for line in lines if line.startswith(("PASS", "FAIL"))]) == 1


def test_validate_on_unverified_fixture(capsys, install_fixture):
    install_fixture("db15k")
    rc, lines = validate(capsys, "distmult", "--task", "db15k")
    assert rc == 1
    assert any(line.startswith("FAIL  load task data:") and "published 12,842" in line for line in lines)
    rc, lines = validate(capsys, "distmult", "--task", "db15k", "--unverified-data")
    assert rc == 0, lines


def test_eval_with_broken_adapter_exits_2(env, capsys, adapters):
    assert main(["eval", "--model", f"{adapters}:WrongShape", "--task", "nations", *FAST]) == 2
    err = capsys.readouterr().err
    assert "WrongShape.score_tails (batch 0, valid split): returned shape (" in err
    assert not env.results.exists() or not list(env.results.rglob("*.json"))


def test_eval_with_user_adapter(env, capsys, adapters):
    assert main(["eval", "--model", f"{adapters}:Tiny", "--task", "nations", *FAST]) == 0
    [path] = sorted(env.results.rglob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["model"]["name"] == "user_adapters:Tiny"
    assert path.parent.name == "user_adapters_Tiny"
    assert rec["model"]["num_parameters"] == (14 + 55) * 4
    assert [h["loss"] for h in rec["training"]["history"]] == [1.0, 0.5]


def test_log_samples_on_an_existing_record(env, capsys):
    assert main(NATIONS) == 0
    assert main([*NATIONS, "--log-samples"]) == 0
    [path] = records(env.results)
    assert json.loads(path.read_text())["samples_file"] is not None
