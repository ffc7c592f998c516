"""Text-generation metrics: the COCO-caption leaderboard protocol and the Graph4MM/MMGL paper protocol.

Inputs everywhere: ``predictions`` (N,) list of str and ``references`` (N,) list of lists of str, one or more
references per sample (a bare str counts as one reference). N must be > 0.

Two profiles
------------
``standard_metrics`` -- profile "coco-standard", the leaderboard protocol. pycocoevalcap 1.2 exactly as
``COCOEvalCap`` runs it: the Stanford PTB tokenizer (Java, CoreNLP 3.4.1, ``-lowerCase``; punctuation tokens
removed afterwards), then ``Bleu(4)`` (pooled over the corpus, "closest" reference length, pycocoevalcap's tiny/small
constants), ``Rouge`` (ROUGE-L, beta = 1.2, max precision and max recall over the references, averaged over samples),
``Cider`` (CIDEr-D: n = 1..4, Gaussian length penalty sigma = 6, clipping, x10, IDF from the evaluated references)
and optionally ``Meteor`` 1.5 (Java). Plus sacreBLEU corpus BLEU on the *raw* text (``sacrebleu.corpus_bleu``
defaults: 13a tokenizer, case-sensitive, exp smoothing) as a tokenizer-independent second figure.

``paper_metrics`` -- profile "graph4mm-compat": how the public Graph4MM/MMGL code
(``language_modelling/run_generation.py``) scores; see its docstring.

Scales: ``bleu1``..``bleu4``, ``rouge_l`` and ``meteor`` lie in [0, 1]; ``cider`` is >= 0 and unbounded (x10 scaling,
typically 0..~10 on captions); ``sacrebleu`` lies in [0, 100].

Empty predictions. An empty prediction, or one that tokenises to nothing (e.g. only punctuation), is scored as it
is -- no placeholder is substituted: it contributes length 0 and no matching n-grams to BLEU (so it lowers the
corpus brevity penalty), ROUGE-L 0, CIDEr 0 and METEOR 0. No scorer crashes on it. The one pycocoevalcap crash
we guard against is CIDEr when *every* reference is empty (``max()`` of an empty document-frequency table); CIDEr
is then reported as 0. (pycocoevalcap's ROUGE-L gives 1.0 when prediction and reference are both empty; kept.)

Bootstrap. BLEU and CIDEr are corpus-level (BLEU pools n-gram counts; CIDEr's IDF comes from the whole reference
set), so a confidence interval must recompute the corpus metric on every resample. Every scorer here returns a
``GenerationScores`` whose ``resample(idx)`` does exactly that from precomputed per-sample statistics, without
calling Java again: BLEU from summed sufficient statistics, ROUGE-L as the mean of the resampled per-sample
values, CIDEr with the IDF (and ``log N``) recomputed from the *resampled* reference set (a sample drawn twice
counts twice, as it would if the resampled corpus were handed to pycocoevalcap). It equals calling the scorer on
the resampled lists (tested to 1e-9) and plugs straight into ``mmbench.metrics.bootstrap.bootstrap_ci``.
METEOR has no ``resample`` figure: its corpus score is aggregated by the jar from alignment statistics; use
``mean_ci(per_sample['meteor'])`` if an approximate interval is needed.

pycocoevalcap, sacrebleu (and, for tests only, rouge-score) are imported lazily, so importing this module needs
only numpy.

Where the pieces live: ``text_scores`` (the result type, input checks), ``ptb`` (the PTB tokenizer), ``cider``
(CIDEr-D statistics), ``coco`` (the standard profile and sacreBLEU), ``paper`` (the paper profile); this module
is the entry point and re-exports them.
"""

from __future__ import annotations

from mmbench.metrics.cider import _CiderStats
from mmbench.metrics.coco import clear_scorer_caches, coco_scores, sacrebleu_scores, standard_metrics
from mmbench.metrics.paper import graph4mm_postprocess, lcs_length, paper_metrics
from mmbench.metrics.ptb import ptb_tokenize, ptb_tokenize_corpus
from mmbench.metrics.text_scores import STANDARD_KEYS, GenerationScores

__all__ = [
    "GenerationScores",
    "STANDARD_KEYS",
    "ptb_tokenize",
    "ptb_tokenize_corpus",
    "coco_scores",
    "sacrebleu_scores",
    "clear_scorer_caches",
    "standard_metrics",
    "graph4mm_postprocess",
    "lcs_length",
    "paper_metrics",
    "_CiderStats",
]
