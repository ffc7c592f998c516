"""``synth-mmkg``: a multimodal KG generated deterministically from the card's parameters.

Design (so that a model using the modalities beats a structure-only one):
- every entity has a latent *type* and a latent *region*; the (type, region) cell is its community;
- relation validity depends on the types: relation r accepts heads of ``domain_types_per_relation``
  types and maps each head type to one tail type; the tail keeps the head's region (with probability
  ``1 - p_region_noise``, else a random region), so (h, r, t) has t in cell (map_r(type h), region h);
- entities have heavy-tailed activity (lognormal, ``activity_sigma``), so many appear in only a few
  training triples and their region is hard to infer from structure alone;
- the text (real words) names the type with probability ``p_type_word`` (a wrong type with
  ``p_wrong_type_word``) and the region with ``p_region_word``; image patch features are noisy vectors
  around type and region centroids; ``p_text`` / ``p_image`` of the entities have each modality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmbench.api import EntityModalities, FeatureSet, TokenBags
from mmbench.data import register_loader
from mmbench.data.kg import KGDataset, verify_counts
from mmbench.data.words import COMMUNITY_WORDS, NOISE_WORDS, TYPE_NOUNS, unique_words
from mmbench.errors import ConfigError
from mmbench.tasks import TaskCard

DEFAULTS: dict[str, Any] = {
    "seed": 0, "num_entities": 3000, "num_types": 12, "num_regions": 20, "num_relations": 24,
    "domain_types_per_relation": 4, "num_triples": 10000, "activity_sigma": 0.8, "p_region_noise": 0.1,
    "valid_fraction": 0.1, "test_fraction": 0.1,
    "p_text": 0.8, "p_type_word": 0.7, "p_wrong_type_word": 0.1, "p_region_word": 0.5, "noise_words": [2, 5],
    "p_image": 0.75, "image_patches": 4, "image_dim": 32,
    "image_type_scale": 1.0, "image_region_scale": 0.6, "image_noise": 1.5,
}


def _status(card: TaskCard) -> tuple[bool, str]:
    return True, "generated on the fly from the card's parameters"


@register_loader("synth-mmkg", _status)
def load_synth_mmkg(card: TaskCard, verify: bool = True) -> KGDataset:
    params = {**DEFAULTS, **(card.dataset.get("params") or {})}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"{card.path}: unknown synth-mmkg parameter(s) {sorted(unknown)}; "
                          f"known: {sorted(DEFAULTS)}")
    ds = generate(params, task=card.name)
    verify_counts(card, ds, verify)
    return ds


def generate(p: dict[str, Any], task: str = "synth-mmkg") -> KGDataset:
    rng = np.random.default_rng(p["seed"])
    n_e, n_t, n_g, n_r = p["num_entities"], p["num_types"], p["num_regions"], p["num_relations"]
    region_words = unique_words(COMMUNITY_WORDS)
    if n_t > len(TYPE_NOUNS) or n_g > len(region_words) or n_t * n_g > n_e:
        raise ConfigError(f"synth-mmkg: at most {len(TYPE_NOUNS)} types and {len(region_words)} regions, and "
                          f"no more (type, region) cells than entities")
    # every (type, region) cell non-empty, the rest uniform
    cell = np.concatenate([np.arange(n_t * n_g), rng.integers(0, n_t * n_g, n_e - n_t * n_g)])
    rng.shuffle(cell)
    etype, region = cell // n_g, cell % n_g
    activity = rng.lognormal(0.0, p["activity_sigma"], n_e)

    triples = _sample_triples(rng, p, cell, etype, activity)
    triples = triples[rng.permutation(len(triples))]
    n_valid = int(round(len(triples) * p["valid_fraction"]))
    n_test = int(round(len(triples) * p["test_fraction"]))
    test, valid, train = triples[:n_test], triples[n_test:n_test + n_valid], triples[n_test + n_valid:]

    vocab = TYPE_NOUNS[:n_t] + region_words[:n_g] + NOISE_WORDS
    texts, token_lists = _texts(rng, p, etype, region, vocab)
    modalities = EntityModalities(
        num_entities=n_e, texts=tuple(texts),
        tokens={"text": TokenBags.from_lists(token_lists, len(vocab), vocab=vocab, source="synth-mmkg words")},
        features={"image": _images(rng, p, etype, region)},
    )

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).long()

    return KGDataset(task=task, num_entities=n_e, num_relations=n_r, train=t(train), valid=t(valid), test=t(test),
                     modalities=modalities, entity_names=tuple(f"e{i}" for i in range(n_e)),
                     relation_names=tuple(f"r{i}" for i in range(n_r)))


def _sample_triples(rng, p, cell, etype, activity) -> np.ndarray:
    """Draw (h, r, t) in vectorised rounds until ``num_triples`` distinct non-loop triples exist."""
    n_e, n_t, n_g, n_r = len(cell), p["num_types"], p["num_regions"], p["num_relations"]
    domains = [rng.choice(n_t, size=p["domain_types_per_relation"], replace=False) for _ in range(n_r)]
    type_map = rng.integers(0, n_t, (n_r, n_t))  # tail type per (relation, head type)
    head_pools = [np.flatnonzero(np.isin(etype, domains[r])) for r in range(n_r)]
    head_cdfs = [np.cumsum(activity[hp]) / activity[hp].sum() for hp in head_pools]
    # tails: entities sorted by cell, activity-weighted within each cell's segment
    order = np.argsort(cell, kind="stable")
    seg_start = np.searchsorted(cell[order], np.arange(n_t * n_g + 1))
    cum = np.cumsum(activity[order])
    before = np.concatenate([[0.0], cum])[seg_start[:-1]]
    total = cum[seg_start[1:] - 1] - before

    keys = np.zeros(0, dtype=np.int64)
    for _ in range(100):
        need = p["num_triples"] - len(keys)
        if need <= 0:
            break
        m = 2 * need + 1024
        rels = rng.integers(0, n_r, m)
        heads = np.empty(m, dtype=np.int64)
        for r in range(n_r):
            sel = rels == r
            idx = np.searchsorted(head_cdfs[r], rng.random(int(sel.sum())), side="right")
            heads[sel] = head_pools[r][np.minimum(idx, len(head_pools[r]) - 1)]
        tail_region = np.where(rng.random(m) < p["p_region_noise"], rng.integers(0, n_g, m), cell[heads] % n_g)
        target = type_map[rels, etype[heads]] * n_g + tail_region
        pos = np.searchsorted(cum, before[target] + rng.random(m) * total[target], side="right")
        tails = order[np.clip(pos, seg_start[target], seg_start[target + 1] - 1)]
        new = (heads * n_r + rels) * n_e + tails
        new = new[heads != tails]
        merged = np.concatenate([keys, new])
        _, first = np.unique(merged, return_index=True)
        keys = merged[np.sort(first)][: p["num_triples"]]
    h, rest = np.divmod(keys, n_r * n_e)
    r, t = np.divmod(rest, n_e)
    return np.stack([h, r, t], 1)


def _texts(rng, p, etype, region, vocab):
    n_t, n_g = p["num_types"], p["num_regions"]
    lo, hi = p["noise_words"]
    noise_ids = np.arange(n_t + n_g, len(vocab))
    texts: list[str | None] = []
    lists: list[list[int]] = []
    for e in range(len(etype)):
        if rng.random() >= p["p_text"]:
            texts.append(None)
            lists.append([])
            continue
        ids = list(rng.choice(noise_ids, size=rng.integers(lo, hi + 1)))
        u = rng.random()
        if u < p["p_type_word"]:
            ids.append(etype[e])
        elif u < p["p_type_word"] + p["p_wrong_type_word"]:
            ids.append(rng.integers(n_t))
        if rng.random() < p["p_region_word"]:
            ids.append(n_t + region[e])
        rng.shuffle(ids)
        ids = [int(i) for i in ids]
        lists.append(ids)
        texts.append(" ".join(vocab[i] for i in ids))
    return texts, lists


def _images(rng, p, etype, region) -> FeatureSet:
    d, n_p, n_e = p["image_dim"], p["image_patches"], len(etype)
    type_centroids = rng.normal(0, 1, (p["num_types"], d))
    region_centroids = rng.normal(0, 1, (p["num_regions"], d))
    base = p["image_type_scale"] * type_centroids[etype] + p["image_region_scale"] * region_centroids[region]
    values = base[:, None, :] + p["image_noise"] * rng.normal(0, 1, (n_e, n_p, d))
    present = rng.random(n_e) < p["p_image"]
    values[~present] = 0.0
    return FeatureSet(values=torch.from_numpy(values).float(), present=torch.from_numpy(present),
                      source="synth-mmkg patch features")
