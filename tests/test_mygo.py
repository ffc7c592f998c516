"""MyGO: tokenization, shapes, padding masks, the contrastive loss, determinism, the protocol."""

from __future__ import annotations

import math

import pytest
import torch

from mmbench.api import EntityModalities, FeatureSet, TokenBags
from mmbench.cli import main
from mmbench.config import build_config
from mmbench.data.synth_kg import DEFAULTS, generate
from mmbench.models.mygo import MyGO, MyGOConfig, fgcl_loss, info_nce
from mmbench.models.tokenize import kmeans, text_tokens, top_k, visual_tokens
from tests.conftest import copy_fixture

SMALL = {**DEFAULTS, "num_entities": 200, "num_types": 4, "num_regions": 5, "num_relations": 6,
         "num_triples": 1200, "domain_types_per_relation": 2}
TINY = dict(dim=16, hidden_dim=32, num_heads=2, batch_size=256, max_vis_tokens=4, max_txt_tokens=4,
            visual_codes=16, fgcl_samples=64, mu=0.1, epochs=1)


def small_model(seed: int = 0, **over) -> tuple[MyGO, object]:
    ds = generate(SMALL, task="synth-small")
    cfg = build_config(MyGOConfig, None, {}, {**TINY, **over}, "mygo")
    torch.manual_seed(seed)
    m = MyGO(cfg)
    m.setup(ds.training_view(), seed)
    return m, ds


# ------------------------------------------------------------------ tokenization
def test_top_k_counts_duplicates_drops_and_breaks_ties_by_first_occurrence():
    ids, mask = top_k([[5, 7, 7, 9, 5, 7, 101], [3], []], k=3, drop=frozenset({101}))
    assert ids[0].tolist() == [7, 5, 9]          # 7 x3, 5 x2, 9 x1; 101 dropped
    assert mask[0].tolist() == [True, True, True]
    assert ids[1].tolist()[:1] == [3] and mask[1].tolist() == [True, False, False]
    assert not mask[2].any()                     # an entity without the modality has no tokens


def test_text_tokens_remove_stopwords_and_special_tokens_by_default():
    m = EntityModalities(num_entities=2, texts=("the river of the amber river", None))
    t = text_tokens(m, k=4)
    from mmbench.backbones import text_tokenizer

    tok = text_tokenizer("minilm")
    words = tok.convert_ids_to_tokens(t.ids[0][t.mask[0]].tolist())
    assert words == ["river", "amber"]           # 'river' twice first; 'the', 'of', [CLS], [SEP] dropped
    assert not t.mask[1].any()
    assert t.table.shape == (30522, 384)
    kept = text_tokens(m, k=6, keep_stopwords=True, keep_special=True)
    kept_words = tok.convert_ids_to_tokens(kept.ids[0][kept.mask[0]].tolist())
    assert kept_words[:2] == ["the", "river"] and "[CLS]" in kept_words


def test_shipped_bert_ids_are_used_as_they_are():
    bags = TokenBags.from_lists([[101, 2314, 2314, 1997, 102], []], vocab_size=30522, source="file.json")
    t = text_tokens(EntityModalities(num_entities=2, tokens={"text": bags}), k=3)
    assert t.ids[0][t.mask[0]].tolist() == [2314]   # 'river'; [CLS], 'of' (stop word), [SEP] dropped
    assert "file.json" in t.source


def test_visual_tokens_from_shipped_codebook_and_from_patch_features():
    codebook = torch.randn(8193, 32)
    bags = TokenBags.from_lists([[4, 4, 9, 1], []], vocab_size=8192, embeddings=codebook)
    t = visual_tokens(EntityModalities(num_entities=2, tokens={"image": bags}), k=2)
    assert t.ids[0].tolist() == [4, 9] and t.table is codebook and not t.mask[1].any()
    patches = torch.randn(3, 4, 8)
    present = torch.tensor([True, False, True])
    t2 = visual_tokens(EntityModalities(num_entities=3, features={"image": FeatureSet(patches, present)}), k=8,
                       num_codes=4)
    assert t2.table.shape == (4, 8)
    assert t2.mask[0].sum() >= 1 and not t2.mask[1].any()


def test_image_level_tokens_follow_the_patch_codes():
    g = torch.Generator().manual_seed(0)
    patches = torch.randn(6, 4, 8, generator=g)
    patches[:3] += 20.0                                   # two well separated image means
    present = torch.tensor([True, True, True, True, True, False])
    m = EntityModalities(num_entities=6, features={"image": FeatureSet(patches, present)})
    t = visual_tokens(m, k=5, num_codes=4, image_codes=2)
    assert t.table.shape == (6, 8)                        # 4 patch codes, then 2 image-level codes
    image_ids = [int(row[mask][row[mask] >= 4].item()) for row, mask in zip(t.ids[:5], t.mask[:5], strict=True)]
    assert len(set(image_ids[:3])) == 1 and len(set(image_ids[3:])) == 1 and image_ids[0] != image_ids[3]
    assert torch.allclose(t.table[image_ids[0]], patches[:3].mean(1).mean(0), atol=1e-4)
    assert not t.mask[5].any()
    assert "image-level" in t.source


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centers])
    cb = kmeans(x, 3, seed=0)
    assert sorted(torch.cdist(centers, cb).min(1).values.tolist())[-1] < 0.2


# ------------------------------------------------------------------ model
def test_shapes():
    m, ds = small_model()
    net = m.module
    out, keep = net.encode()
    k = 2 + m.vis_tokens.ids.shape[1] + m.txt_tokens.ids.shape[1]
    assert out.shape == (ds.num_entities, k, 16) and keep.shape == (ds.num_entities, k)
    m.begin_scoring()
    s = m.score_tails(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    h = m.score_heads(torch.tensor([0, 1]), torch.tensor([3, 4]))
    m.end_scoring()
    assert s.shape == (3, ds.num_entities) and h.shape == (2, ds.num_entities)
    assert torch.isfinite(s).all() and torch.isfinite(h).all()


def test_score_scale_multiplies_every_logit():
    a, _ = small_model()
    b, _ = small_model(score_scale=0.25)
    b.module.load_state_dict(a.module.state_dict())
    heads, rels = torch.tensor([0, 5, 9]), torch.tensor([1, 2, 3])
    for m in (a, b):
        m.begin_scoring()
    sa, sb = a.score_tails(heads, rels), b.score_tails(heads, rels)
    assert torch.allclose(sb, 0.25 * sa, atol=1e-6) and not torch.allclose(sa, sb)
    assert torch.allclose(b.score_heads(rels, heads), 0.25 * a.score_heads(rels, heads), atol=1e-6)


def test_padded_tokens_do_not_change_the_entity_representation():
    m, ds = small_model()
    net = m.module.eval()
    has_padding = (~net.txt.mask).any(1) & net.txt.mask.any(1)
    assert has_padding.any()
    before = net.entities().detach()
    net.txt.ids[~net.txt.mask] = 123       # different tokens behind the padding mask
    net.vis.ids[~net.vis.mask] = 3
    after = net.entities().detach()
    assert torch.allclose(before, after, atol=1e-6)
    net.txt.ids[net.txt.mask] = 123        # changing a real token does change it
    assert not torch.allclose(before, net.entities().detach(), atol=1e-4)


def test_entities_without_a_modality_encode_without_nan():
    m, ds = small_model()
    no_txt = ~m.module.txt.mask.any(1)
    no_img = ~m.module.vis.mask.any(1)
    assert no_txt.any() and no_img.any()
    assert torch.isfinite(m.module.eval().entities()).all()


def test_info_nce_hand_checked():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosine logits / 0.5 = [[2, 0], [0, 2]]: each row's loss is log(1 + e^-2)
    assert info_nce(a, a, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    p = torch.tensor([[0.0, 1.0], [1.0, 0.0]])   # positives swapped: log(1 + e^2)
    assert info_nce(a, p, 0.5).item() == pytest.approx(math.log(1 + math.exp(2)), abs=1e-6)


def test_fgcl_averages_views_and_skips_absent_rows():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    good = math.log(1 + math.exp(-2))
    views = {"ent": (a[:2].clone(), torch.tensor([True, True])),
             "visual": (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([True, True]))}
    assert fgcl_loss(a[:2], views, 0.5).item() == pytest.approx(good, abs=1e-6)
    # a view present for fewer than two rows has no negatives and is left out
    views["text"] = (torch.tensor([[5.0, 5.0], [0.0, 0.0]]), torch.tensor([True, False]))
    assert fgcl_loss(a[:2], views, 0.5).item() == pytest.approx(good, abs=1e-6)


def test_fgcl_switch_changes_training():
    m1, _ = small_model(use_fgcl=True)
    m2, _ = small_model(use_fgcl=False)
    assert m1.train_epoch(1) != pytest.approx(m2.train_epoch(1), abs=1e-9)


def test_determinism_under_a_seed():
    outs = []
    for _ in range(2):
        m, _ = small_model(seed=3)
        loss = m.train_epoch(1)
        m.begin_scoring()
        outs.append((loss, m.score_tails(torch.tensor([0, 5]), torch.tensor([1, 2]))))
        m.end_scoring()
    assert outs[0][0] == outs[1][0]
    assert torch.equal(outs[0][1], outs[1][1])
    m3, _ = small_model(seed=4)
    assert m3.train_epoch(1) != outs[0][0]


def test_no_test_triple_reaches_training():
    m, ds = small_model()
    test_only = {tuple(t) for t in ds.test.tolist()} - {tuple(t) for t in ds.train.tolist()}
    seen = {tuple(t) for t in m.tail_queries.tolist()}
    seen |= {(t, r - ds.num_relations, h) for h, r, t in m.head_queries.tolist()}
    assert seen == {tuple(t) for t in ds.train.tolist()}
    assert not (seen & test_only)


# ------------------------------------------------------------------ end to end
def test_mygo_runs_on_the_db15k_layout_fixture(env, capsys):
    copy_fixture("db15k", env.data / "db15k")
    rc = main(["eval", "--model", "mygo", "--task", "db15k", "--unverified-data", "--quiet",
               "--set", "epochs=1", "--set", "eval_every=1", "--set", "dim=16", "--set", "hidden_dim=32",
               "--set", "batch_size=64"])
    assert rc == 0
    import json

    rec = json.loads(next(env.results.rglob("*.json")).read_text())
    details = rec["model"]["details"]
    assert "DB15K-visual.json" in details["visual"]["source"] and details["visual"]["table"] == [8193, 32]
    assert "DB15K-textual-v2.json" in details["text"]["source"] and details["text"]["table"] == [30522, 384]
    assert rec["model"]["config"]["max_txt_tokens"] == 4          # the db15k preset
    assert 0 < rec["metrics"]["test"]["both.realistic.mrr"] <= 1
    assert rec["task"]["data_verified"] is False


# ------------------------------------------------------------------ initialisation and relation dropout
def test_public_initialisation_follows_the_public_code_scales():
    """init=public: the Tucker core xavier_uniform (bound sqrt(6 / (2 d^2))), the structure and relation tables
    uniform with bound sqrt(6 / (d (n + 1))) as xavier_uniform_ on (n, 1, d) tables gives; init=mmbench keeps
    TuckER's uniform(-1, 1) core and xavier_normal tables."""
    m, ds = small_model(init="public")
    net, d = m.module, 16
    core_bound = math.sqrt(6 / (2 * d * d))
    assert net.tucker.core.abs().max() <= core_bound and net.tucker.core.abs().max() > 0.9 * core_bound
    e_bound = math.sqrt(6 / (d * (ds.num_entities + 1)))
    assert net.ent.weight.abs().max() <= e_bound and net.ent.weight.abs().max() > 0.9 * e_bound
    r_bound = math.sqrt(6 / (d * (ds.num_relations + 1)))
    assert net.rel.weight.abs().max() <= r_bound
    old, _ = small_model(init="mmbench")
    assert old.module.tucker.core.abs().max() > 0.9          # uniform(-1, 1)
    assert old.module.ent.weight.std() > 3 * net.ent.weight.std()   # sqrt(2 / (E + d)) vs the bound / sqrt(3)


def test_per_relation_dropout_gives_every_query_of_a_relation_the_same_mask():
    torch.manual_seed(0)
    m, _ = small_model(relation_dropout="per-relation", emb_dropout=0.5)
    net = m.module
    net.train()
    rels = torch.tensor([1, 1, 1, 2])
    seen = {}

    def capture(_module, inputs, _output):
        seen["seq"] = inputs[0].detach()
    hook = net.cte.register_forward_hook(capture)
    net.query(net.entities(), torch.tensor([0, 1, 2, 3]), rels)
    hook.remove()
    r = seen["seq"][:, 1] - net.ctx_pos[0, 1]
    assert torch.equal(r[0] == 0, r[1] == 0) and torch.equal(r[0] == 0, r[2] == 0)
    assert torch.allclose(r[0], r[1]) and (r[0] == 0).any()
    m2, _ = small_model(relation_dropout="per-query", emb_dropout=0.5)
    m2.module.train()
    hook = m2.module.cte.register_forward_hook(capture)
    m2.module.query(m2.module.entities(), torch.tensor([0, 1, 2, 3]), rels)
    hook.remove()
    r2 = seen["seq"][:, 1] - m2.module.ctx_pos[0, 1]
    assert not torch.equal(r2[0] == 0, r2[1] == 0)


def test_masked_head_queries_read_mask_relation_anchor_with_the_relations_one_row():
    """head_query=masked-head (the public code's score()): (?, r, t) is the CTE over (MASK, r, t), read at
    position 0, with relation row r (no reciprocal rows); tail queries are unchanged."""
    m, ds = small_model(head_query="masked-head")
    net = m.module.eval()
    assert net.rel.weight.shape[0] == ds.num_relations
    ents = net.entities()
    rels, tails = torch.tensor([1, 2]), torch.tensor([3, 4])
    r = net.rel_norm(net.rel.weight)[rels]
    seq = torch.stack([net.mask_token.expand(2, -1), r, ents[tails]], 1) + net.ctx_pos
    out = net.cte(seq)
    want = net.tucker(out[:, 0], out[:, 1]) @ ents.t()
    assert torch.allclose(net.logits(ents, tails, rels + ds.num_relations), want, atol=1e-5)
    seq = torch.stack([ents[tails], r, net.mask_token.expand(2, -1)], 1) + net.ctx_pos
    out = net.cte(seq)
    assert torch.allclose(net.logits(ents, tails, rels), net.tucker(out[:, 2], out[:, 1]) @ ents.t(), atol=1e-5)
    net.zero_grad()
    net.logits(ents, tails, rels + ds.num_relations).sum().backward()
    assert net.rel.weight.grad[1].abs().sum() > 0     # a head query trains the relation's own row
    reciprocal, _ = small_model(head_query="reciprocal")
    assert reciprocal.module.rel.weight.shape[0] == 2 * ds.num_relations


def test_public_fgcl_means_average_every_position_and_drop_the_last_text_one():
    """fgcl_means=public (model_mygo.py's contrastive_loss_finegrained): plain means with padding, the text view
    over positions 2 + k_v .. L - 2, every row present; masked (default) leaves padding out."""
    m, _ = small_model(fgcl_means="public")
    net = m.module.eval()
    rows = torch.arange(6)
    out, keep = net.encode(rows)
    assert not keep.all()                        # the fixture has padded token slots
    views = net.views(rows)
    k = net.k_vis
    assert torch.allclose(views["global"][0], out.mean(1), atol=1e-6)
    assert torch.allclose(views["visual"][0], out[:, 2:2 + k].mean(1), atol=1e-6)
    assert torch.allclose(views["text"][0], out[:, 2 + k:out.shape[1] - 1].mean(1), atol=1e-6)
    assert all(present.all() for _, present in views.values())
    masked, _ = small_model()
    net2 = masked.module.eval()
    out2, keep2 = net2.encode(rows)
    w = keep2.float().unsqueeze(-1)
    assert torch.allclose(net2.views(rows)["global"][0], (out2 * w).sum(1) / w.sum(1), atol=1e-6)


def test_bad_init_value_is_refused():
    from mmbench.errors import ConfigError
    with pytest.raises(ConfigError, match="init='xavier' is not one of public, mmbench"):
        build_config(MyGOConfig, None, {}, {"init": "xavier"}, "mygo")


def test_keys_added_later_leave_the_run_key_at_their_old_value():
    """A config at the values of ``keys_added_later`` has the run key it had before those keys existed, so the
    committed synth-mmkg records (made before ``init`` / ``relation_dropout``) keep their identity."""
    import dataclasses

    from mmbench.results import run_key
    from mmbench.runner import run_key_config

    later = MyGOConfig.keys_added_later
    assert set(later) == {"init", "relation_dropout", "head_query", "fgcl_means"}
    cfg = dataclasses.asdict(build_config(MyGOConfig, None, {}, dict(later), "mygo"))
    before = {k: v for k, v in cfg.items() if k not in later}
    assert run_key("mygo", run_key_config(MyGOConfig, cfg), "f", 0) == run_key("mygo", before, "f", 0)
    new = dict(cfg, init="public")
    assert run_key("mygo", run_key_config(MyGOConfig, new), "f", 0) != run_key("mygo", before, "f", 0)
