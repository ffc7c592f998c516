"""wikiweb-gen and ele-fashion run end to end on their format fixtures, as a user with the real data would."""

from __future__ import annotations

import json

from conftest import FIXTURES, card_raw, copy_fixture, write_card

from mmbench.cli import main


def _record(env) -> dict:
    recs = [p for p in env.results.rglob("*.json") if "_sweep" not in p.parts]
    assert len(recs) == 1
    return json.loads(recs[0].read_text())


def test_wikiweb_gen_prepare_and_eval_on_the_official_fixture(env, tmp_path, capsys):
    raw = card_raw("wikiweb-gen")
    raw["dataset"]["params"]["sample_pages"] = 0          # every page of the fixture
    card = write_card(tmp_path / "cards", raw)
    assert main(["data", "prepare", str(card), "--from", str(FIXTURES / "wikiweb" / "official")]) == 0
    assert (env.data / "wikiweb-gen" / "MANIFEST.json").exists()
    assert main(["eval", "--model", "lm-subgraph", "--task", str(card), "--quiet", "--log-samples",
                 "--set", "lm=tiny-llama", "--set", "epochs=1", "--set", "max_prompt_tokens=96"]) == 0
    rec = _record(env)
    assert rec["task"]["family"] == "generation" and rec["task"]["name"] == "wikiweb-gen"
    assert set(rec["metrics"]["test"]) >= {"bleu4", "rouge_l", "cider", "sacrebleu", "paper.cider"}
    assert rec["protocol"]["decoding"] == "greedy" and rec["intervals"]["cider"][0] <= rec["metrics"]["test"]["cider"]
    assert rec["training"]["selection"]["metric"] == "valid/cider"
    assert rec["protocol"]["context_targets"] == "keep"  # the published protocol, stated in the record


def test_wikiweb_gen_without_data_says_what_to_do(env, capsys):
    assert main(["eval", "--model", "lm-node", "--task", "wikiweb-gen"]) == 2
    err = capsys.readouterr().err
    assert "mmbench data prepare wikiweb-gen --from" in err and "wikiweb2m" in err.lower()


def test_ele_fashion_eval_on_the_mm_graph_fixture(env, capsys):
    copy_fixture("ele-fashion", env.data / "ele-fashion")
    assert main(["eval", "--model", "gcn", "--task", "ele-fashion", "--unverified-data", "--quiet",
                 "--set", "epochs=5", "--set", "eval_every=1"]) == 0
    rec = _record(env)
    assert rec["task"]["data_verified"] is False and rec["model"]["config"]["features"] == "clip"
    assert 0 <= rec["metrics"]["test"]["accuracy"] <= 1 and "macro_f1" in rec["metrics"]["test"]
    assert rec["per_class"] and {"class", "support", "precision", "recall", "f1"} <= set(rec["per_class"][0])


def test_ele_fashion_zero_shot_eval_predicts_only_unseen_classes(env, capsys):
    copy_fixture("ele-fashion", env.data / "ele-fashion")
    assert main(["eval", "--model", "gcn", "--task", "ele-fashion-zs", "--unverified-data", "--quiet",
                 "--log-samples", "--set", "epochs=3", "--set", "eval_every=1"]) == 0
    rec = _record(env)
    unseen = set(rec["protocol"]["candidate_classes"])
    assert unseen == {6, 7, 8, 9, 10} and rec["protocol"]["zero_shot"]
    from mmbench.io import read_jsonl_gz

    rows = read_jsonl_gz(next(env.results.rglob("*.samples.jsonl.gz")))
    assert rows and {r["pred"] for r in rows} <= unseen and {r["label"] for r in rows} <= unseen


def test_ele_fashion_without_data_says_what_to_do(env, capsys):
    assert main(["eval", "--model", "gcn", "--task", "ele-fashion"]) == 2
    assert "mmbench data prepare ele-fashion --from" in capsys.readouterr().err
