"""copy-context (baselines/copy_context.py): a copied input sentence per sample, no training, end to end."""

from __future__ import annotations

import gzip
import json

from test_generation_baselines import sample, toy_data

from baselines.copy_context import CopyContext, CopyContextConfig, copy_sentence, sentences
from mmbench.cli import main
from mmbench.config import build_config
from mmbench.data import load_task_data
from mmbench.tasks import get_card


def test_sentences_split_on_end_marks_and_lines():
    assert sentences("The cat sat. It purred!  Then? done\nnext line") == ["The cat sat.", "It purred!", "Then?",
                                                                           "done", "next line"]
    assert sentences(None) == [] and sentences("  ") == [] and sentences("no end mark") == ["no end mark"]
    assert sentences("Version 2.5 is out.") == ["Version 2.5 is out."]


def test_copy_picks_the_neighbour_sentence_with_most_shared_content_words():
    s = sample("a", "The red boot stands near the old harbour.",
               [("A page about shoes. The red boot is sold out.", None, 1),   # red, boot
                ("Harbour news. The old red boot in the harbour!", None, 2)])  # old, red, boot, harbour
    assert copy_sentence(s) == "The old red boot in the harbour!"
    # stop words do not count: "it", "is", "on", "the" are shared by the first neighbour only
    t = sample("b", "it is on the fountain", [("It is on the gate.", None, 1), ("A fountain.", None, 2)])
    assert copy_sentence(t) == "A fountain."
    # a tie goes to the nearer neighbour, whatever the sample order
    u = sample("c", "blue lamp", [("Far blue thing.", None, 2), ("Near blue thing.", None, 1)])
    assert copy_sentence(u) == "Near blue thing."


def test_copy_fallbacks():
    assert copy_sentence(sample("a", "First sentence here. Second one.", [("Nothing shared.", None, 1)])) == \
        "First sentence here."
    assert copy_sentence(sample("b", None, [(None, "img.png", 1), ("Neighbour words. More.", None, 2)])) == \
        "Neighbour words."
    assert copy_sentence(sample("c", None, [(None, "img.png", 1)])) == ""


def test_copy_context_trains_nothing():
    cfg = build_config(CopyContextConfig, "synth-gen", {}, {"epochs": 5}, "copy-context")
    assert cfg.epochs == 0
    m = CopyContext(cfg)
    data = toy_data()
    m.setup(data, 0)
    assert m.train_epoch(1) == 0.0 and m.state_dict() == {} and m.num_parameters() == 0
    out = m.generate(list(data.test), max_new_tokens=2)
    assert out == ["Birds fly south in winter.", "Fish swim in the sea."]   # no shared word: own first sentence


def test_copy_context_on_synth_gen_copies_input_sentences_only(env):
    assert main(["eval", "--model", "copy-context", "--task", "synth-gen", "--log-samples", "--quiet"]) == 0
    [path] = sorted((env.results / "synth-gen" / "copy-context").glob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["model"]["config"]["epochs"] == 0 and rec["training"]["history"] == []
    assert {"cider", "bleu4", "rouge_l"} <= set(rec["metrics"]["test"]) and rec["metrics"]["valid"]
    with gzip.open(path.with_name(path.name.replace(".json", ".samples.jsonl.gz")), "rt") as f:
        logged = [json.loads(line) for line in f]
    data = load_task_data(get_card("synth-gen"))
    assert len(logged) == len(data.graph.splits["test"]) == 200
    copied_from_neighbour = 0
    for row in logged:
        s = data.assemble(int(row["id"]))
        texts = [n.text for n in s.nodes if n.text]
        assert row["prediction"] and any(row["prediction"] in t for t in texts), row
        assert row["prediction"] != row["reference"]
        copied_from_neighbour += row["prediction"] != s.nodes[0].text
    assert copied_from_neighbour > 100          # mostly a neighbour's sentence, not the fallback
