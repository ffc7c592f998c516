"""The Graph4MM adapter (mmbench/models/graph4mm.py): soft tokens at the right positions, loss masking, class-name
scoring, no cross-sample mixing, determinism, and end-to-end runs on the format fixtures with tiny random
models loaded by path. The layers themselves are tested in test_graph4mm_layers.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES, card_raw, copy_fixture, write_card
from test_backbones import save_clip, save_lm
from test_generation_baselines import png, sample, toy_data

from mmbench.cli import main
from mmbench.config import build_config
from mmbench.errors import ConfigError
from mmbench.models.graph4mm import Graph4MMClassifier, Graph4MMConfig, Graph4MMGenerator
from mmbench.models.graph_lm import content_free_sample
from mmbench.models.graph_prompts import LAYOUTS, interleaved_prompt
from mmbench.registry import get_model


@pytest.fixture
def mm_samples(tmp_path):
    blue, red, green = (png(tmp_path / f"{c}.png", rgb) for c, rgb in
                        (("b", (0, 0, 200)), ("r", (200, 0, 0)), ("g", (0, 200, 0))))
    a = sample("a", "The target item.", [("A scene nearby.", blue, 1), ("A far note.", None, 2),
                                         (None, green, 2)], image=red)
    b = sample("b", "Another item.", [("Its neighbour.", None, 1)])
    return [a, b]


def model(samples, targets=None, **kw) -> Graph4MMGenerator:
    cfg = build_config(Graph4MMConfig, None, {}, {"lm": "tiny-llama", "max_image_slots": 3, "qformer_heads": 2,
                                                  "diffusion_heads": 2, **kw}, "graph4mm")
    m = Graph4MMGenerator(cfg)
    m.setup(toy_data(samples, targets or [f"t{i}" for i in range(len(samples))]), seed=0)
    return m


def test_registry_serves_both_families_under_one_name():
    assert get_model("graph4mm", "generation") is Graph4MMGenerator
    assert get_model("graph4mm", "classification") is Graph4MMClassifier


def test_soft_tokens_land_after_their_nodes_text(mm_samples):
    m = model(mm_samples)
    soft = m.soft_tokens(mm_samples)
    assert sorted(soft[0]) == [0, 1, 3] and soft[1] == {}           # image slots: target, scene, the image node
    assert all(t.shape == (4, 64) for t in soft[0].values())
    parts, admitted = interleaved_prompt(m.tokenizer, mm_samples[0], soft[0], 384)
    tok = m.tokenizer
    kinds = ["soft" if isinstance(p, torch.Tensor) and p.is_floating_point() else tok.decode(p) for p in parts]
    # target text, its image's tokens, the context header, scene text + tokens, note text, image-only node + tokens
    assert kinds[1] == "soft" and kinds[4] == "soft" and kinds[-2] == "soft"
    assert "target item" in kinds[0] and "scene nearby" in kinds[3] and kinds[-1].endswith("summary :")
    assert torch.equal(parts[1], soft[0][0]) and torch.equal(parts[4], soft[0][1])
    assert admitted == [0, 1, 2, 3]
    # the batch marks exactly the soft positions, and the labels cover only the target tokens
    b = m.batch(mm_samples[:1], [[5, 6, 102]], training=True)
    assert int(b["soft_mask"].sum()) == 12
    assert b["labels"][0][b["labels"][0] != -100].tolist() == [5, 6, 102]
    assert not bool((b["labels"][0] != -100)[b["soft_mask"][0]].any())


def test_related_layout_reads_as_the_lm_cls_prompt_with_soft_tokens_after_their_text(tmp_path):
    from baselines.lm_cls import build_prompts

    img = png(tmp_path / "n.png", (0, 0, 200))
    s = sample("r", "The target item.", [("First friend.", None, 1), ("Second friend.", img, 1),
                                         ("A far note.", None, 2)])
    m = model([s])
    tok = m.tokenizer
    soft = {2: torch.ones(4, 64)}
    parts, admitted = interleaved_prompt(tok, s, soft, 384, "\nCategory:", layout=LAYOUTS["related"])
    assert admitted == [0, 1, 2]                                        # the 2-hop note is left out
    assert [isinstance(p, torch.Tensor) and p.is_floating_point() for p in parts] == [False] * 4 + [True, False]
    text = tok.decode([i for p in parts if not isinstance(p, torch.Tensor) for i in p])

    class Graph:  # the same three nodes as lm-cls sees them: the target's in-neighbours 1 and 2, in that order
        texts = ["The target item.", "First friend.", "Second friend."]
        num_nodes = 3
        edge_index = torch.tensor([[1, 2], [0, 0]])

    want = build_prompts(Graph, [0], "Node: {text}\nRelated: {neighbors}\nCategory:", 8, 200)[0]
    assert text == tok.decode(tok(want, add_special_tokens=False)["input_ids"])
    # the budget counts the separator: a prompt one token short of the whole drops the last piece's tail
    full = sum(p.shape[0] if isinstance(p, torch.Tensor) else len(p) for p in parts)
    short, _ = interleaved_prompt(tok, s, soft, full - 1, "\nCategory:", layout=LAYOUTS["related"],
                                  min_piece_tokens=100)
    assert not any(isinstance(p, torch.Tensor) for p in short)          # the second friend and its tokens go


def test_prefix_placement_puts_all_tokens_first(mm_samples):
    m = model(mm_samples, placement="prefix")
    b = m.batch(mm_samples[:1], None, training=False)
    mask = b["soft_mask"][0][b["attention_mask"][0].bool()]
    assert mask[:12].all() and not mask[12:].any()


def test_samples_never_mix_and_runs_are_deterministic(mm_samples, tmp_path):
    m = model(mm_samples)
    m.module.eval()
    alone = m.soft_tokens(mm_samples[:1])[0]
    other = sample("c", "Other.", [("x", png(tmp_path / "w.png", (250, 250, 250)), 1)], image=str(tmp_path / "w.png"))
    together = m.soft_tokens([mm_samples[0], other])[0]
    assert all(torch.allclose(alone[k], together[k], atol=1e-6) for k in alone)
    again = model(mm_samples)
    again.module.eval()
    assert all(torch.equal(alone[k], again.soft_tokens(mm_samples[:1])[0][k]) for k in alone)


def test_training_reduces_the_target_loss_and_state_round_trips(mm_samples):
    m = model(mm_samples, ["cats sit", "dogs bark"], lr=1e-2, trainable="last:1")
    state = m.state_dict()
    assert state and any(k.startswith("lm.") for k in state) and any(k.startswith("qformer.") for k in state)
    losses = [m.train_epoch(e) for e in range(1, 6)]
    assert losses[-1] < losses[0], losses
    m.load_state_dict(state)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())
    assert len(m.generate(mm_samples, max_new_tokens=3)) == 2


@pytest.mark.parametrize("over", [dict(variant="hop-aware"), dict(text_variant="hop-aware"),
                                  dict(text_structure=False, image_structure=False), dict(use_images=False),
                                  dict(use_qformer=False), dict(qformer_order="public"), dict(trainable="prefix:n=2"),
                                  dict(trainable="lora:r=2,alpha=4")])
def test_variants_and_ablations_run(mm_samples, over):
    m = model(mm_samples, **over)
    assert m.train_epoch(1) > 0 and len(m.generate(mm_samples, 2)) == 2
    if over.get("use_images") is False:
        assert m.soft_tokens(mm_samples) == [{}, {}]


def test_embedding_rms_scale_puts_soft_tokens_at_the_embedding_tables_scale(mm_samples):
    plain, scaled = model(mm_samples), model(mm_samples, soft_token_scale="embedding-rms")
    table = plain.module.lm.get_input_embeddings().weight.detach()
    want = float(table.pow(2).mean().sqrt())
    for m in (plain, scaled):
        m.module.eval()
    tok_plain = torch.cat(list(plain.soft_tokens(mm_samples[:1])[0].values()))         # (12, H)
    tok_scaled = torch.cat(list(scaled.soft_tokens(mm_samples[:1])[0].values()))
    rms = tok_scaled.pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.full_like(rms, want), rtol=1e-3), (rms, want)
    # same direction as the unscaled tokens (same seed, same modules): only each token's length changes
    cos = torch.nn.functional.cosine_similarity(tok_plain, tok_scaled, dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)
    assert not torch.allclose(tok_plain.pow(2).mean(-1).sqrt(), rms, rtol=0.05)


def test_standardised_features_enter_the_projections_centred_with_unit_variance(mm_samples):
    m = model(mm_samples, feature_norm="standardise")
    net, enc = m.module, m.enc
    for modality, table, proj in (("text", enc.text_table, net.text_proj), ("image", enc.image_table, net.image_proj)):
        mean, std = net.feature_stats[modality]
        z = (table - mean) / std
        assert torch.allclose(z.mean(0), torch.zeros_like(mean), atol=1e-5)
        live = table.std(0) > 1e-4  # columns that vary over the set-up rows
        assert torch.allclose(z.std(0)[live], torch.ones(int(live.sum())), atol=1e-4)
        assert torch.allclose(net.encode(modality, table), proj(z), atol=1e-5)
    plain = model(mm_samples)
    assert plain.module.feature_stats == {}
    assert torch.equal(plain.module.encode("image", enc.image_table), plain.module.image_proj(enc.image_table))


def test_query_init_std_sets_the_scale_of_the_initial_queries(mm_samples):
    small, public = model(mm_samples, query_init_std=0.02), model(mm_samples)
    assert abs(float(small.module.qformer.queries.std()) - 0.02) < 0.002
    assert abs(float(public.module.qformer.queries.std()) - 1.0) < 0.1


def test_graph_edges_all_links_the_images_of_related_nodes(mm_samples):
    # sample a: target (red) - scene (blue) - note - image-only node (green), every edge text-text: the typed
    # image graph has no edge; with graph_edges=all the target's and the scene's images are linked
    typed, whole = model(mm_samples[:1]), model(mm_samples[:1], graph_edges="all")
    assert typed._modalities(mm_samples[:1])[1].edges.shape == (2, 0)
    assert whole._modalities(mm_samples[:1])[1].edges.tolist() == [[0, 1], [1, 0]]
    assert torch.equal(typed._modalities(mm_samples[:1])[0].edges, whole._modalities(mm_samples[:1])[0].edges)


def test_alignment_teaches_the_modules_to_describe_each_image_and_leaves_the_lm_alone(mm_samples):
    # two (image, text) nodes in the training samples: the target (red) and the scene (blue). The tiny random LM's
    # output hardly depends on its input (its loss stays near ln(vocab)), so only a fall is asserted
    plain = model(mm_samples, trainable="last:1")
    aligned = model(mm_samples, trainable="last:1", align_epochs=8, align_lr=1e-2)
    report = aligned.describe()["align"]
    assert report["pairs"] == 2 and len(report["loss"]) == 8 and report["loss"][-1] < report["loss"][0]
    assert "align" not in plain.describe()
    before, after = plain.state_dict(), aligned.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if k.startswith("lm."))
    assert not torch.equal(before["qformer.queries"], after["qformer.queries"])
    assert aligned.lm_params and all(p.requires_grad for p in aligned.lm_params)   # the LM trains afterwards


def test_bad_values_are_refused(mm_samples):
    for over, msg in ((dict(variant="hop"), "variant"), (dict(placement="middle"), "placement"),
                      (dict(feature_norm="l2"), "feature_norm"), (dict(query_init_std=0.0), "query_init_std"),
                      (dict(soft_token_scale="unit"), "soft_token_scale"),
                      (dict(qformer_order="x"), "qformer_order"), (dict(queries_per_image=0), "queries_per_image"),
                      (dict(graph_edges="some"), "graph_edges"), (dict(prompt_layout="table"), "prompt_layout"),
                      (dict(align_epochs=1, use_images=False), "align_epochs"), (dict(align_lr=-1.0), "align_lr")):
        with pytest.raises(ConfigError, match=msg):
            model(mm_samples, **over)


# --------------------------------------------------------------------------- classification
@pytest.fixture
def cls_view():
    from test_classification_baselines import homophilous, view

    texts = [f"a {'red blue green'.split()[i % 3]} item number {i}" for i in range(45)]
    graph, perm = homophilous(n=45, texts=texts)
    data = view(graph, perm[:24], perm[24:33], perm[33:])
    from functools import partial

    from mmbench.api import ClassificationTrainingData

    free = data.graph
    return ClassificationTrainingData(**{**data.__dict__, "assemble": partial(free.sample, k=2, max_nodes=6)})


def classifier(view, **kw) -> Graph4MMClassifier:
    cfg = build_config(Graph4MMConfig, None, {}, {"lm": "tiny-llama", "qformer_heads": 2, "diffusion_heads": 2,
                                                  "max_prompt_tokens": 96, **kw}, "graph4mm")
    m = Graph4MMClassifier(cfg)
    m.setup(view, seed=0)
    return m


def test_class_name_scoring_matches_label_likelihoods(cls_view):
    from mmbench.models import lm_decode, lm_utils

    m = classifier(cls_view)
    m.begin_scoring()
    scores = m.predict(cls_view.test_nodes[:4])
    m.end_scoring()
    assert scores.shape == (4, 3)
    parts = m.prompts(m.samples_of(cls_view.test_nodes[:4].tolist()))
    ref = lm_decode.label_log_likelihoods(m.module.lm, parts, m.label_ids, pad_token_id=lm_utils.pad_id(m.tokenizer))
    assert torch.allclose(scores, ref, atol=1e-5)
    assert m.train_epoch(1) > 0


def test_candidate_loss_is_cross_entropy_over_the_training_names_and_trains(tmp_path):
    from dataclasses import replace
    from functools import partial

    from test_classification_baselines import homophilous, view

    from mmbench.models import lm_decode, lm_utils

    colours = [(200, 0, 0), (0, 0, 200), (0, 200, 0)]
    pics = [png(tmp_path / f"{i}.png", colours[i % 3]) for i in range(3)]
    graph, perm = homophilous(n=45, texts=[f"item {i}" for i in range(45)])
    graph = replace(graph, images=tuple(pics[i % 3] for i in range(45)))
    zs = replace(view(graph, perm[:24], perm[24:33], perm[33:]), train_classes=(0, 1), candidate_classes=(2,))
    zs = replace(zs, assemble=partial(zs.graph.sample, k=2, max_nodes=6))
    m = classifier(zs, cls_loss="candidates", lr=1e-2)
    nodes = m.train_nodes[:4]
    b = m.batch(m.samples_of(nodes), None, training=False)
    lab = lm_decode.label_tensors([m.label_ids[k] for k in (0, 1)], lm_utils.pad_id(m.tokenizer), m.device)
    scores = lm_decode.label_scores(m.module.lm, b, *lab)                          # (4, 2), differentiable
    parts = m.prompts(m.samples_of(nodes))
    with torch.no_grad():
        ref = lm_decode.label_log_likelihoods(m.module.lm, parts, [m.label_ids[0], m.label_ids[1]],
                                              pad_token_id=lm_utils.pad_id(m.tokenizer))
    assert torch.allclose(scores.detach(), ref, atol=1e-5)
    y = torch.tensor(m.train_labels[:4])                 # classes 0 and 1 are score columns 0 and 1
    F.cross_entropy(scores, y).backward()                                         # reaches the soft tokens
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.own_params)
    m.module.zero_grad()
    losses = [m.train_epoch(e) for e in range(1, 4)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    with pytest.raises(ConfigError, match="cls_loss"):
        classifier(zs, cls_loss="hinge")


def test_centred_candidate_loss_ignores_a_shift_of_one_name_for_every_input(cls_view, monkeypatch):
    from mmbench.models import lm_decode

    real = lm_decode.label_scores

    def epoch_loss(cls_loss: str, shift: float) -> float:
        m = classifier(cls_view, cls_loss=cls_loss, lr=1e-12)   # ~fixed parameters (lr must be > 0)
        monkeypatch.setattr(lm_decode, "label_scores", lambda *a: real(*a) + torch.tensor([shift, 0.0, 0.0]))
        try:
            return m.train_epoch(1)
        finally:
            monkeypatch.setattr(lm_decode, "label_scores", real)

    assert math.isclose(epoch_loss("centred", 0.0), epoch_loss("centred", 3.0), rel_tol=1e-5)
    assert not math.isclose(epoch_loss("candidates", 0.0), epoch_loss("candidates", 3.0), rel_tol=1e-3)
    assert epoch_loss("centred", 0.0) != epoch_loss("candidates", 0.0)


def test_domain_calibration_subtracts_the_training_prompts_mean_name_scores(cls_view):
    from mmbench.models import lm_decode

    raw_m, cal_m = classifier(cls_view), classifier(cls_view, calibration="domain", calibration_nodes=5)
    nodes = cls_view.test_nodes[:4]
    for m in (raw_m, cal_m):
        m.begin_scoring()
    raw, cal = raw_m.predict(nodes), cal_m.predict(nodes)
    ref = lm_decode.calibration_subset(cal_m.train_nodes, 5)
    assert len(ref) == 5 and set(ref) <= set(cal_m.train_nodes)
    prior = cal_m._name_scores(cal_m.samples_of(ref)).mean(0)        # (candidates,) with the soft tokens
    assert torch.allclose(cal, raw - prior, atol=1e-5) and not torch.allclose(cal, raw)
    first = cal_m._reference                    # the harness predicts in chunks: one reference pass per scoring
    cal_m.predict(nodes[:2])
    assert cal_m._reference is first
    cal_m.end_scoring()
    assert cal_m._reference is None
    free = classifier(cls_view, calibration="content-free")
    free.begin_scoring()
    cf_prior = free._name_scores([content_free_sample(x) for x in lm_decode.CONTENT_FREE]).mean(0)
    assert torch.allclose(free.predict(nodes), raw - cf_prior, atol=1e-5)
    with pytest.raises(ConfigError, match="calibration"):
        classifier(cls_view, calibration="batch")


def test_linear_head_trains_and_refuses_zero_shot(cls_view):
    m = classifier(cls_view, head="linear", lr=1e-2)
    losses = [m.train_epoch(e) for e in range(1, 4)]
    assert losses[-1] < losses[0]
    m.begin_scoring()
    assert m.predict(cls_view.test_nodes[:3]).shape == (3, 3)
    m.end_scoring()
    from dataclasses import replace

    zs = replace(cls_view, train_classes=(0, 1), candidate_classes=(2,))
    with pytest.raises(ConfigError, match="zero-shot split"):
        classifier(zs, head="linear")


# --------------------------------------------------------------------------- end to end on the fixtures
@pytest.mark.slow
def test_graph4mm_on_the_wikiweb_fixture_with_tiny_opt_and_clip_by_path(env, tmp_path):
    raw = card_raw("wikiweb-gen")
    raw["dataset"]["params"]["sample_pages"] = 0
    card = write_card(tmp_path / "cards", raw)
    assert main(["data", "prepare", str(card), "--from", str(FIXTURES / "wikiweb" / "official")]) == 0
    opt, clip = save_lm(tmp_path / "opt", "opt"), save_clip(tmp_path / "clip", processor=True)
    assert main(["eval", "--model", "graph4mm", "--task", str(card), "--quiet", "--set", f"lm={opt}",
                 "--set", f"vision_encoder={clip}", "--set", "epochs=1", "--set", "max_prompt_tokens=96"]) == 0
    rec = json.loads(next(p for p in env.results.rglob("*.json") if "_sweep" not in p.parts).read_text())
    assert rec["model"]["backbones"]["lm"]["path"] == str(opt.resolve())
    assert rec["model"]["backbones"]["vision_encoder"]["path"] == str(clip.resolve())
    assert "cider" in rec["metrics"]["test"] and rec["model"]["details"]["encoded"]["texts"] > 0


@pytest.mark.slow
def test_graph4mm_on_the_ele_fashion_zero_shot_fixture(env, tmp_path):
    copy_fixture("ele-fashion", env.data / "ele-fashion")
    clip = save_clip(tmp_path / "clip")
    assert main(["eval", "--model", "graph4mm", "--task", "ele-fashion-zs", "--unverified-data", "--quiet",
                 "--log-samples", "--set", "lm=tiny-llama", "--set", f"vision_encoder={clip}", "--set", "epochs=1",
                 "--set", "max_prompt_tokens=64"]) == 0
    rec = json.loads(next(p for p in env.results.rglob("*.json") if "_sweep" not in p.parts).read_text())
    from mmbench.io import read_jsonl_gz

    unseen = set(rec["protocol"]["candidate_classes"])
    rows = read_jsonl_gz(next(env.results.rglob("*.samples.jsonl.gz")))
    assert rows and {r["pred"] for r in rows} <= unseen
