"""CIDEr-D as pycocoevalcap computes it, vectorised for bootstrap resampling; n-gram counting."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from mmbench.metrics.text_scores import _CIDER_SIGMA, _MAX_N, _int64


def _ngram_counts(tokens: Sequence[str], max_n: int = _MAX_N) -> Counter:
    """All n-grams of orders 1..max_n as a Counter of token tuples."""
    counts: Counter = Counter()
    for k in range(1, max_n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i: i + k])] += 1
    return counts


class _CiderStats:
    """CIDEr-D (pycocoevalcap ``CiderScorer`` maths) for any reweighting of the samples, vectorised.

    With idf(g) = log(M) - log(max(1, df(g))) >= 0 (M = number of samples, df counted over the references of the
    samples), the clipped numerator sum_g min(h_g idf_g, r_g idf_g) r_g idf_g = sum_g idf_g^2 min(h_g, r_g) r_g and
    both squared norms are linear in idf^2, so each resample costs a few ``bincount`` calls over the precomputed
    (entity, n-gram) entries. The length penalty uses pycocoevalcap's "length" (the number of *bigrams*, a quirk of
    ``counts2vec``) and sigma = 6; per sample: mean over n = 1..4 of the summed similarities / #refs x 10.

    cand_tokens: (N,) token lists; ref_tokens: (N,) lists of token lists
    """

    def __init__(self, cand_tokens: Sequence[Sequence[str]], ref_tokens: Sequence[Sequence[Sequence[str]]]):
        vocab: dict[tuple, int] = {}
        order: list[int] = []

        def gid(g: tuple) -> int:
            i = vocab.get(g)
            if i is None:
                i = vocab[g] = len(order)
                order.append(len(g) - 1)
            return i

        hyp_s, hyp_g, hyp_v = [], [], []
        ref_r, ref_g, ref_v = [], [], []
        pair_r, pair_g, pair_v = [], [], []
        pres_s, pres_g = [], []
        owner, len_hyp, len_ref, nrefs = [], [], [], []
        for s, (cand, refs) in enumerate(zip(cand_tokens, ref_tokens, strict=True)):
            hc = _ngram_counts(cand)
            for g, tf in hc.items():
                i = gid(g)
                hyp_s.append(s)
                hyp_g.append(i)
                hyp_v.append(float(tf) * tf)
            len_hyp.append(max(0, len(cand) - 1))
            nrefs.append(len(refs))
            seen: set[int] = set()
            for ref in refs:
                r = len(owner)
                owner.append(s)
                len_ref.append(max(0, len(ref) - 1))
                for g, tf in _ngram_counts(ref).items():
                    i = gid(g)
                    seen.add(i)
                    ref_r.append(r)
                    ref_g.append(i)
                    ref_v.append(float(tf) * tf)
                    h = hc.get(g, 0)
                    if h:
                        pair_r.append(r)
                        pair_g.append(i)
                        pair_v.append(float(min(h, tf)) * tf)
            pres_s.extend([s] * len(seen))
            pres_g.extend(seen)

        self.n = len(nrefs)
        self.num_refs = len(owner)
        self.num_grams = len(order)
        order_arr = np.asarray(order, dtype=np.int64)
        self.hyp_g, self.ref_g, self.pair_g = _int64(hyp_g), _int64(ref_g), _int64(pair_g)
        self.hyp_slot = _int64(hyp_s) * _MAX_N + order_arr[self.hyp_g]
        self.ref_slot = _int64(ref_r) * _MAX_N + order_arr[self.ref_g]
        self.pair_slot = _int64(pair_r) * _MAX_N + order_arr[self.pair_g]
        self.hyp_v, self.ref_v, self.pair_v = (np.asarray(x, dtype=np.float64) for x in (hyp_v, ref_v, pair_v))
        self.pres_s, self.pres_g = _int64(pres_s), _int64(pres_g)
        self.owner = _int64(owner)
        self.nrefs = np.asarray(nrefs, dtype=np.float64)
        delta = (_int64(len_hyp)[self.owner] - _int64(len_ref)).astype(np.float64)
        self.penalty = np.e ** (-(delta ** 2) / (2 * _CIDER_SIGMA ** 2))  # (R,)

    def per_sample(self, weights: np.ndarray) -> np.ndarray:
        """weights (N,) sample multiplicities -> (N,) CIDEr of every sample under the reweighted corpus's IDF."""
        m = float(weights.sum())
        df = np.bincount(self.pres_g, weights=weights[self.pres_s].astype(np.float64), minlength=self.num_grams)
        idf = np.log(m) - np.log(np.maximum(df, 1.0))
        idf2 = idf * idf
        slots_r, slots_h = self.num_refs * _MAX_N, self.n * _MAX_N
        num = np.bincount(self.pair_slot, weights=self.pair_v * idf2[self.pair_g], minlength=slots_r)
        nr = np.sqrt(np.bincount(self.ref_slot, weights=self.ref_v * idf2[self.ref_g], minlength=slots_r))
        nh = np.sqrt(np.bincount(self.hyp_slot, weights=self.hyp_v * idf2[self.hyp_g], minlength=slots_h))
        num, nr = num.reshape(-1, _MAX_N), nr.reshape(-1, _MAX_N)
        nh = nh.reshape(-1, _MAX_N)[self.owner]
        both = (nh != 0) & (nr != 0)
        val = np.where(both, num / np.where(both, nh * nr, 1.0), num) * self.penalty[:, None]  # (R, 4)
        per_order = np.stack([np.bincount(self.owner, weights=val[:, k], minlength=self.n) for k in range(_MAX_N)], 1)
        return per_order.mean(1) / self.nrefs * 10.0

    def corpus(self, weights: np.ndarray) -> float:
        return float((weights * self.per_sample(weights)).sum() / weights.sum())


def _pycoco_cider(cands: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """pycocoevalcap ``Cider`` on whitespace-split strings; 0 when every reference is empty (it would crash)."""
    if not any(r.split() for rs in refs for r in rs):
        return 0.0, [0.0] * len(cands)
    from pycocoevalcap.cider.cider import Cider

    score, scores = Cider().compute_score({i: list(r) for i, r in enumerate(refs)},
                                          {i: [c] for i, c in enumerate(cands)})
    return float(score), [float(x) for x in scores]
