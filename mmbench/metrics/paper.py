"""The public Graph4MM/MMGL scoring, profile "graph4mm-compat" (``mmbench.metrics.generation`` describes it)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from mmbench.metrics.cider import _CiderStats, _ngram_counts, _pycoco_cider
from mmbench.metrics.text_scores import _MAX_N, GenerationScores, _check, _weights


def graph4mm_postprocess(text: str) -> str:
    """The public code's cut: ``i = text.find('.')``; if ``i > 5`` keep ``text[:i]`` (the '.' is dropped)."""
    i = text.find(".")
    return text[:i] if i > 5 else text


def _rouge_tokens(text: str) -> list[str]:
    """torchmetrics/rouge-score default normaliser: lowercase, [^a-z0-9]+ -> space, split, drop empties."""
    return [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", text.lower())) if t]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (bit-parallel, Hyyro 2004)."""
    m = len(a)
    if m == 0 or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << m) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return m - bin(v).count("1")


def _f1(hits: int, pred_len: int, target_len: int) -> float:
    """torchmetrics ``_compute_metrics`` F-measure (beta = 1); 0 when either side is empty or nothing matches."""
    if pred_len == 0 or target_len == 0 or hits == 0:
        return 0.0
    p, r = hits / pred_len, hits / target_len
    return 2 * p * r / (p + r)


def _paper_rouge_l(pred: str, refs: Sequence[str]) -> float:
    """torchmetrics ``ROUGEScore()`` rougeL F for one sample with ``accumulate='best'``: the best ROUGE-L F over
    the references.

    The public Graph4MM code pins no torchmetrics version; it was published in May-July 2025, when pip installed
    torchmetrics 1.7, which takes the best of each ROUGE key over the references (since 1.6.0). torchmetrics <= 1.5
    chose the reference by the *first* key's F (rouge1) and reported that reference's ROUGE-L: prediction
    ``a b c d`` with references ``d c b a`` and ``a b c`` gives 0.857 here, 0.25 there. With one reference per
    sample (WikiWeb2M) the two agree.
    """
    p = _rouge_tokens(pred)
    return max((_f1(lcs_length(p, t), len(p), len(t)) for t in map(_rouge_tokens, refs)), default=0.0)


def _paper_bleu_row(pred: str, refs: Sequence[str]) -> list[int]:
    """torchmetrics ``_bleu_score_update`` for one sample: [pred_len, target_len, numerator[4], denominator[4]]."""
    p = pred.split()
    ts = [r.split() for r in refs]
    lens = [len(t) for t in ts]
    diffs = [abs(len(p) - x) for x in lens]
    target_len = lens[diffs.index(min(diffs))]  # closest; first reference in list order on ties
    pc = _ngram_counts(p)
    tc: Counter = Counter()
    for t in ts:
        tc |= _ngram_counts(t)
    num, den = [0] * _MAX_N, [0] * _MAX_N
    for g, c in (pc & tc).items():
        num[len(g) - 1] += c
    for g, c in pc.items():
        den[len(g) - 1] += c
    return [len(p), target_len, *num, *den]


def _paper_bleu_from_sums(sums: Sequence[int], order: int) -> float:
    """torchmetrics ``_bleu_score_compute`` with n_gram = order, uniform weights, smooth=False (float64)."""
    pred_len, target_len = sums[0], sums[1]
    num, den = sums[2: 2 + _MAX_N], sums[2 + _MAX_N:]
    if min(num[:order]) == 0:
        return 0.0
    geo = math.exp(sum((1.0 / order) * math.log(num[k] / den[k]) for k in range(order)))
    bp = 1.0 if pred_len > target_len else math.exp(1 - target_len / pred_len)
    return bp * geo


class _PaperResampler:
    def __init__(self, preds: list[str], refs: list[list[str]], bleu_rows: np.ndarray, rouge: np.ndarray):
        self.preds, self.refs, self.bleu_rows, self.rouge = preds, refs, bleu_rows, rouge
        self.n = len(preds)

    @cached_property
    def _cider(self) -> _CiderStats:
        return _CiderStats([p.split() for p in self.preds], [[r.split() for r in rs] for rs in self.refs])

    def __call__(self, idx: np.ndarray) -> dict[str, float]:
        w = _weights(idx, self.n)
        sums = [int(x) for x in w @ self.bleu_rows]
        out = {f"bleu{k}": _paper_bleu_from_sums(sums, k) for k in range(1, _MAX_N + 1)}
        out["rouge_l"] = float(np.mean(self.rouge[np.asarray(idx, dtype=np.int64).reshape(-1)]))
        out["cider"] = self._cider.corpus(w.astype(np.float64))
        return out


def paper_metrics(predictions: Sequence[str], references: Sequence[Sequence[str] | str],
                  postprocess: bool = False) -> GenerationScores:
    """How the public Graph4MM/MMGL code scores generation (profile "graph4mm-compat"), in float64.

    predictions: (N,) str; references: (N,) lists of str. Keys: bleu1..bleu4, rouge_l, cider (as standard_metrics).

    BLEU-n (``torchmetrics.BLEUScore(n_gram=n)``, smooth=False): tokens = ``str.split()``, case kept. Per sample
    c_i = #pred tokens, r_i = length of the reference closest to c_i (first in list order on ties), clipped counts
    m_k = sum_i sum_g min(count_pred(g), max_ref count(g)) and totals t_k = sum_i max(0, c_i - k + 1) over k-grams.
    With C = sum c_i, R = sum r_i: BLEU-n = 0 if any m_k = 0 (k <= n), else
    BP * exp(sum_{k<=n} (1/n) log(m_k / t_k)) with BP = 1 if C > R else exp(1 - R / C).
    (torchmetrics computes in float32; expect agreement to ~1e-7.)

    ROUGE-L (``torchmetrics ROUGEScore()`` rougeL_fmeasure): text lowercased, every run of [^a-z0-9] replaced by a
    space, split on whitespace, no stemming; F = 2PR / (P + R) with P = LCS / |pred|, R = LCS / |ref| (0 when
    either is empty); ``accumulate='best'``: the best ROUGE-L F over the references (torchmetrics >= 1.6; see
    ``_paper_rouge_l``); averaged over samples. Equals rouge-score's ``rougeL`` fmeasure for one reference (tested).

    CIDEr: pycocoevalcap's CIDEr-D (the code ships an identical copy) on the raw ``str.split()`` tokens -- no PTB
    tokenizer, no lowercasing -- with IDF from the evaluated references.

    postprocess: apply the code's prediction cut (``graph4mm_postprocess``) first. Off by default: it was meant for
    teacher-forced argmax strings. The code's references started with "summary:"; ours never do, so nothing is
    stripped. (Its teacher forcing and prefix inflation are deliberately not reproduced.)

    per_sample: rouge_l, cider (BLEU here has no per-sample form).
    """
    refs = _check(predictions, references)
    preds = [graph4mm_postprocess(p) for p in predictions] if postprocess else list(predictions)
    bleu_rows = np.asarray([_paper_bleu_row(p, rs) for p, rs in zip(preds, refs, strict=True)], dtype=np.int64)
    sums = [int(x) for x in bleu_rows.sum(0)]
    corpus = {f"bleu{k}": _paper_bleu_from_sums(sums, k) for k in range(1, _MAX_N + 1)}
    rouge = np.asarray([_paper_rouge_l(p, rs) for p, rs in zip(preds, refs, strict=True)], dtype=np.float64)
    corpus["rouge_l"] = float(rouge.mean())
    corpus["cider"], cider_ps = _pycoco_cider(preds, refs)
    per_sample = {"rouge_l": rouge.tolist(), "cider": cider_ps}
    return GenerationScores(corpus=corpus, per_sample=per_sample, n=len(refs),
                            resample=_PaperResampler(preds, refs, bleu_rows, rouge))
