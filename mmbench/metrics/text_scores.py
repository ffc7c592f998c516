"""The result type of every text-generation scorer and the input checks they share."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

STANDARD_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider")
"""Keys of ``standard_metrics`` (plus ``meteor`` when asked, and ``sacrebleu``) and of ``paper_metrics``."""

ResampleFn = Callable[[np.ndarray], dict[str, float]]
"""idx (M,) int array of sample indices (repeats allowed) -> corpus metrics recomputed on that resample."""

_MAX_N = 4
_CIDER_SIGMA = 6.0
# Characters the JVM / PTBTokenizer (-preserveLines) or Python treat as line breaks: folded to a space.
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


# --------------------------------------------------------------------------------------------------- result type


@dataclass(frozen=True, eq=False)
class GenerationScores(Mapping[str, float]):
    """Corpus metrics (also readable as a mapping: ``scores['bleu4']``, ``dict(scores)``) plus per-sample values.

    corpus:     metric name -> corpus-level value
    per_sample: metric name -> (N,) list, only for metrics the scorer defines per sample (pycocoevalcap's sentence
                BLEU, ROUGE-L, CIDEr under the full-corpus IDF, METEOR). For ROUGE-L and CIDEr the corpus value is
                the mean of these; for BLEU and METEOR it is not (both pool statistics over the corpus).
    n:          number of samples N
    resample:   idx (M,) -> corpus metrics recomputed on ``[sample[i] for i in idx]`` (see module docstring);
                keys are those of ``corpus`` except ``meteor``
    """

    corpus: dict[str, float]
    per_sample: dict[str, list[float]]
    n: int
    resample: ResampleFn | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> float:
        return self.corpus[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.corpus)

    def __len__(self) -> int:
        return len(self.corpus)


def _merge(a: GenerationScores, b: GenerationScores) -> GenerationScores:
    resample = None
    if a.resample is not None and b.resample is not None:
        fa, fb = a.resample, b.resample

        def resample(idx: np.ndarray) -> dict[str, float]:
            return {**fa(idx), **fb(idx)}

    return GenerationScores(corpus={**a.corpus, **b.corpus}, per_sample={**a.per_sample, **b.per_sample},
                            n=a.n, resample=resample)


def _check(predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> list[list[str]]:
    """Validate shapes; returns references as a list of non-empty lists of str."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if len(predictions) == 0:
        raise ValueError("no samples to score")
    refs = []
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        if not isinstance(p, str):
            raise TypeError(f"prediction {i} is {type(p).__name__}, not str")
        r = [r] if isinstance(r, str) else list(r)
        if not r:
            raise ValueError(f"sample {i} has no reference")
        if not all(isinstance(x, str) for x in r):
            raise TypeError(f"references of sample {i} must be str")
        refs.append(r)
    return refs


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    """Multiplicity of every sample in a resample: (n,) int64."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("empty resample")
    if idx.min() < 0 or idx.max() >= n:
        raise IndexError(f"resample indices must lie in [0, {n})")
    return np.bincount(idx, minlength=n)


def _int64(x: Sequence[int]) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)
