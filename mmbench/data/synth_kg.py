"""``synth-mmkg``: a multimodal KG generated deterministically from the card's parameters.

Design (so that a model using the modalities beats a structure-only one):
- every entity belongs to a latent *community*; communities are grouped into *types*;
- each relation has a domain of head types and maps each head community to one tail community;
  a triple (h, r, t) draws t from the community ``map_r[community(h)]``;
- entities have heavy-tailed activity, so many appear in only a few training triples and their
  community is hard to infer from structure alone;
- the text (real words) names the type with probability ``p_type_word`` (a wrong type otherwise,
  sometimes) and the community with probability ``p_community_word``; image features are noisy
  patch vectors around type and community centroids; some entities lack text or image.
"""

from __future__ import annotations

from pathlib import Path
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
    "seed": 0, "num_entities": 3000, "num_types": 12, "communities_per_type": 20, "num_relations": 24,
    "domain_types_per_relation": 4, "num_triples": 20000, "activity_sigma": 1.2,
    "valid_fraction": 0.1, "test_fraction": 0.1,
    "p_text": 0.8, "p_type_word": 0.7, "p_wrong_type_word": 0.1, "p_community_word": 0.5,
    "noise_words": [2, 5],
    "p_image": 0.75, "image_patches": 4, "image_dim": 32,
    "image_type_scale": 1.0, "image_community_scale": 0.6, "image_noise": 1.5,
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
    n_e, n_t, n_r = p["num_entities"], p["num_types"], p["num_relations"]
    n_c = n_t * p["communities_per_type"]
    words = unique_words(COMMUNITY_WORDS)
    if n_t > len(TYPE_NOUNS) or n_c > len(words) or n_c > n_e:
        raise ConfigError(f"synth-mmkg: at most {len(TYPE_NOUNS)} types, {len(words)} communities and "
                          f"no more communities than entities")
    # communities: every community non-empty, the rest uniform
    community = np.concatenate([np.arange(n_c), rng.integers(0, n_c, n_e - n_c)])
    rng.shuffle(community)
    etype = community // p["communities_per_type"]
    members = [np.flatnonzero(community == c) for c in range(n_c)]
    activity = rng.lognormal(0.0, p["activity_sigma"], n_e)

    triples = _sample_triples(rng, p, community, etype, members, activity, n_c, n_t, n_r)
    perm = rng.permutation(len(triples))
    triples = triples[perm]
    n_valid = int(round(len(triples) * p["valid_fraction"]))
    n_test = int(round(len(triples) * p["test_fraction"]))
    test, valid, train = triples[:n_test], triples[n_test:n_test + n_valid], triples[n_test + n_valid:]

    vocab = TYPE_NOUNS[:n_t] + words[:n_c] + NOISE_WORDS
    texts, token_lists = _texts(rng, p, community, etype, n_t, n_c, vocab)
    image = _images(rng, p, community, etype, n_t, n_c)
    modalities = EntityModalities(
        num_entities=n_e, texts=tuple(texts),
        tokens={"text": TokenBags.from_lists(token_lists, len(vocab), vocab=vocab, source="synth-mmkg words")},
        features={"image": image},
    )
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long()  # noqa: E731
    return KGDataset(task=task, num_entities=n_e, num_relations=n_r, train=t(train), valid=t(valid), test=t(test),
                     modalities=modalities, entity_names=tuple(f"e{i}" for i in range(n_e)),
                     relation_names=tuple(f"r{i}" for i in range(n_r)))


def _sample_triples(rng, p, community, etype, members, activity, n_c, n_t, n_r) -> np.ndarray:
    """Draw (h, r, t) in vectorised rounds until ``num_triples`` distinct non-loop triples exist."""
    domains = [rng.choice(n_t, size=p["domain_types_per_relation"], replace=False) for _ in range(n_r)]
    cpt = p["communities_per_type"]
    # maps[r, c]: tail community for head community c (-1 outside the relation's domain)
    maps = np.full((n_r, n_c), -1)
    for r in range(n_r):
        for a in domains[r]:
            b = rng.integers(n_t)
            maps[r, a * cpt:(a + 1) * cpt] = b * cpt + rng.integers(0, cpt, cpt)
    head_pools = [np.flatnonzero(np.isin(etype, domains[r])) for r in range(n_r)]
    head_cdfs = [np.cumsum(activity[hp]) / activity[hp].sum() for hp in head_pools]
    # tails: entities sorted by community, activity-weighted within each community's segment
    order = np.concatenate(members)
    seg_start = np.concatenate([[0], np.cumsum([len(m) for m in members])])
    cum = np.cumsum(activity[order])
    before = np.concatenate([[0.0], cum])[seg_start[:-1]]
    total = cum[seg_start[1:] - 1] - before

    keys = np.zeros(0, dtype=np.int64)
    n_e = len(community)
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
        comm = maps[rels, community[heads]]
        pos = np.searchsorted(cum, before[comm] + rng.random(m) * total[comm], side="right")
        tails = order[np.clip(pos, seg_start[comm], seg_start[comm + 1] - 1)]
        new = (heads * n_r + rels) * n_e + tails
        new = new[heads != tails]
        merged = np.concatenate([keys, new])
        _, first = np.unique(merged, return_index=True)
        keys = merged[np.sort(first)][: p["num_triples"]]
    h, rest = np.divmod(keys, n_r * n_e)
    r, t = np.divmod(rest, n_e)
    return np.stack([h, r, t], 1)


def _texts(rng, p, community, etype, n_t, n_c, vocab):
    lo, hi = p["noise_words"]
    noise_ids = np.arange(n_t + n_c, len(vocab))
    texts: list[str | None] = []
    lists: list[list[int]] = []
    for e in range(len(community)):
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
        if rng.random() < p["p_community_word"]:
            ids.append(n_t + community[e])
        rng.shuffle(ids)
        ids = [int(i) for i in ids]
        lists.append(ids)
        texts.append(" ".join(vocab[i] for i in ids))
    return texts, lists


def _images(rng, p, community, etype, n_t, n_c) -> FeatureSet:
    d, n_p = p["image_dim"], p["image_patches"]
    type_centroids = rng.normal(0, 1, (n_t, d))
    comm_centroids = rng.normal(0, 1, (n_c, d))
    n_e = len(community)
    base = p["image_type_scale"] * type_centroids[etype] + p["image_community_scale"] * comm_centroids[community]
    values = base[:, None, :] + p["image_noise"] * rng.normal(0, 1, (n_e, n_p, d))
    present = rng.random(n_e) < p["p_image"]
    values[~present] = 0.0
    return FeatureSet(values=torch.from_numpy(values).float(), present=torch.from_numpy(present),
                      source="synth-mmkg patch features")


def write_layout(ds: KGDataset, out_dir: Path) -> None:
    """Write a generated KG in the MyGO layout (used by fixtures and the docs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", ds.train), ("valid", ds.valid), ("test", ds.test)):
        (out_dir / f"{name}.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in split.tolist()))
