"""The leaderboard profile ("coco-standard"): pycocoevalcap BLEU / ROUGE-L / CIDEr (/ METEOR) on PTB tokens,
plus sacreBLEU on raw text (``mmbench.metrics.generation`` describes the whole protocol)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from mmbench.metrics.cider import _CiderStats, _pycoco_cider
from mmbench.metrics.ptb import ptb_tokenize_corpus
from mmbench.metrics.text_scores import _MAX_N, GenerationScores, _check, _merge, _weights


def _coco_bleu_from_sums(testlen: int, reflen: int, guess: Sequence[int], correct: Sequence[int]) -> list[float]:
    """pycocoevalcap ``BleuScorer.compute_score`` corpus formula, same float operations in the same order."""
    small, tiny = 1e-9, 1e-15
    bleus, bleu = [], 1.0
    for k in range(_MAX_N):
        bleu *= float(correct[k] + tiny) / (guess[k] + small)
        bleus.append(bleu ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        bleus = [b * math.exp(1 - 1 / ratio) for b in bleus]
    return bleus


class _CocoResampler:
    """``resample`` of ``coco_scores``: BLEU sufficient statistics, per-sample ROUGE-L, vectorised CIDEr."""

    def __init__(self, tok_preds: list[str], tok_refs: list[list[str]], rouge: list[float]):
        self.tok_preds, self.tok_refs = tok_preds, tok_refs
        self.rouge = np.asarray(rouge, dtype=np.float64)
        self.n = len(tok_preds)

    @cached_property
    def _bleu(self) -> np.ndarray:
        """(N, 2 + 2*4) int64: testlen, closest reflen, guess[4], correct[4] (pycocoevalcap's cook functions)."""
        from pycocoevalcap.bleu.bleu_scorer import cook_refs, cook_test

        rows = []
        for p, rs in zip(self.tok_preds, self.tok_refs, strict=True):
            c = cook_test(p, cook_refs(rs))
            reflen = min((abs(length - c["testlen"]), length) for length in c["reflen"])[1]
            rows.append([c["testlen"], reflen, *c["guess"], *c["correct"]])
        return np.asarray(rows, dtype=np.int64)

    @cached_property
    def _cider(self) -> _CiderStats:
        return _CiderStats([p.split() for p in self.tok_preds], [[r.split() for r in rs] for rs in self.tok_refs])

    def __call__(self, idx: np.ndarray) -> dict[str, float]:
        w = _weights(idx, self.n)
        sums = [int(x) for x in w @ self._bleu]
        bleus = _coco_bleu_from_sums(sums[0], sums[1], sums[2: 2 + _MAX_N], sums[2 + _MAX_N:])
        out = {f"bleu{k + 1}": float(b) for k, b in enumerate(bleus)}
        out["rouge_l"] = float(np.mean(self.rouge[np.asarray(idx, dtype=np.int64).reshape(-1)]))
        out["cider"] = self._cider.corpus(w.astype(np.float64))
        return out


def _meteor(tok_preds: Sequence[str], tok_refs: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()  # starts the JVM (~8 s with the paraphrase table)
    try:
        score, scores = scorer.compute_score({i: list(r) for i, r in enumerate(tok_refs)},
                                             {i: [p] for i, p in enumerate(tok_preds)})
    finally:
        with scorer.lock:  # stop the JVM now rather than at garbage collection; close every pipe
            proc = scorer.meteor_p
            proc.stdin.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    return float(score), [float(x) for x in scores]


def coco_scores(tok_preds: Sequence[str], tok_refs: Sequence[Sequence[str] | str],
                meteor: bool = False) -> GenerationScores:
    """pycocoevalcap Bleu(4), Rouge, Cider (and Meteor) on already PTB-tokenised text (see ``ptb_tokenize``).

    tok_preds: (N,) str; tok_refs: (N,) lists of str. Keys: bleu1..bleu4, rouge_l, cider (+ meteor).
    per_sample: bleu1..bleu4 (pycocoevalcap's sentence BLEU), rouge_l, cider (+ meteor).
    ``resample(idx)`` recomputes bleu1..4, rouge_l and cider on a resample without the scorers' Python loops.
    """
    refs = _check(tok_preds, tok_refs)
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(tok_preds)}
    bleu, bleu_ps = Bleu(_MAX_N).compute_score(gts, res, verbose=0)
    rouge, rouge_ps = Rouge().compute_score(gts, res)
    cider, cider_ps = _pycoco_cider(list(tok_preds), refs)
    corpus = {f"bleu{k + 1}": float(bleu[k]) for k in range(_MAX_N)}
    per_sample = {f"bleu{k + 1}": [float(x) for x in bleu_ps[k]] for k in range(_MAX_N)}
    corpus["rouge_l"], per_sample["rouge_l"] = float(rouge), [float(x) for x in rouge_ps]
    corpus["cider"], per_sample["cider"] = cider, cider_ps
    if meteor:
        corpus["meteor"], per_sample["meteor"] = _meteor(tok_preds, refs)
    resampler = _CocoResampler(list(tok_preds), refs, per_sample["rouge_l"])
    return GenerationScores(corpus=corpus, per_sample=per_sample, n=len(refs), resample=resampler)


class _SacreResampler:
    def __init__(self, stats: np.ndarray):
        self.stats = stats  # (N, 2 + 2*4) int64: sys_len, ref_len, correct[4], total[4]
        self.n = stats.shape[0]

    def __call__(self, idx: np.ndarray) -> dict[str, float]:
        return {"sacrebleu": _sacrebleu_from_sums(_weights(idx, self.n) @ self.stats)}


def _sacrebleu_from_sums(sums: np.ndarray) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU()._compute_score_from_stats([int(x) for x in sums]).score)


def sacrebleu_scores(predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> GenerationScores:
    """sacreBLEU corpus BLEU on raw text (``sacrebleu.corpus_bleu`` defaults: 13a, case-sensitive, exp smoothing).

    Key ``sacrebleu`` in [0, 100]. Variable numbers of references are padded with ``None`` (sacrebleu's convention).
    Computed from sacrebleu's per-segment statistics (``BLEU._extract_corpus_statistics``), summed; equals
    ``corpus_bleu(...).score`` (tested), and ``resample`` re-sums them.
    """
    refs = _check(predictions, references)
    from sacrebleu.metrics import BLEU

    streams = [[rs[j] if j < len(rs) else None for rs in refs] for j in range(max(len(rs) for rs in refs))]
    stats = np.asarray(BLEU()._extract_corpus_statistics(list(predictions), streams), dtype=np.int64)
    return GenerationScores(corpus={"sacrebleu": _sacrebleu_from_sums(stats.sum(0))}, per_sample={},
                            n=len(refs), resample=_SacreResampler(stats))


def clear_scorer_caches() -> int:
    """Empty the module-level caches scoring libraries keep (sacrebleu's tokenizers memoise every text they
    tokenise, references included, in an ``lru_cache``), so nothing scored in one job stays reachable from the
    next job's adapter in the same process. Returns the number of caches cleared."""
    import inspect
    import sys

    cleared = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("sacrebleu.tokenizers."):
            continue
        for obj in vars(module).values():
            members = vars(obj).values() if inspect.isclass(obj) else [obj]
            for member in members:
                if hasattr(member, "cache_clear"):
                    member.cache_clear()
                    cleared += 1
    return cleared


def standard_metrics(predictions: Sequence[str], references: Sequence[Sequence[str] | str],
                     meteor: bool = False) -> GenerationScores:
    """The leaderboard protocol ("coco-standard"); see the module docstring.

    predictions: (N,) str, raw model output; references: (N,) lists of raw reference strings.
    One Java call tokenises everything (plus one JVM for METEOR when ``meteor=True``, ~8 s).
    Keys: bleu1..bleu4 (bleu4 is the headline), rouge_l, cider, meteor (when asked), sacrebleu.
    """
    tok_preds, tok_refs = ptb_tokenize_corpus(predictions, references)
    return _merge(coco_scores(tok_preds, tok_refs, meteor=meteor), sacrebleu_scores(predictions, references))
