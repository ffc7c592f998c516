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
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

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


# ------------------------------------------------------------------------------------------------ PTB tokenizer


def _ptb_jar() -> Path:
    from pycocoevalcap.tokenizer import ptbtokenizer

    return Path(ptbtokenizer.__file__).resolve().parent / ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's PTB tokenisation of every text, in one Java call; returns (len(texts),) str.

    Same jar (CoreNLP 3.4.1 shipped with pycocoevalcap), same flags (``-preserveLines -lowerCase``) and the same
    punctuation filter (``pycocoevalcap...ptbtokenizer.PUNCTUATIONS``) as ``PTBTokenizer.tokenize``, so the tokens
    are identical (tested), including pycocoevalcap's quirk that brackets survive as ``-lrb-``/``-rrb-`` (the
    filter lists them upper-case, but the tokenizer has already lowercased them). Differences, all in robustness:
    the input goes to a file in the system temp dir (not next to the jar, so site-packages need not be writable);
    line-break characters inside a text (``\\r``, ``\\u2028``, ...) are folded to spaces (pycocoevalcap folds only
    ``\\n``; CoreNLP splits the line at the others and every later caption silently shifts by one); the output line
    count is checked; blank texts are answered ``""`` without asking Java; CoreNLP's stderr is captured.
    """
    texts = list(texts)
    out = [""] * len(texts)
    todo = [i for i, t in enumerate(texts) if t.strip()]
    if not todo:
        return out
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("the PTB tokenizer needs Java on PATH (pycocoevalcap runs Stanford CoreNLP 3.4.1)")
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    lines = [_LINE_BREAKS.sub(" ", texts[i]) for i in todo]
    with tempfile.TemporaryDirectory(prefix="mmbench-ptb-") as tmp:
        path = Path(tmp) / "captions.txt"
        path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
        proc = subprocess.run([java, "-cp", str(_ptb_jar()), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", str(path)], capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"PTBTokenizer failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    got = proc.stdout.decode("utf-8").split("\n")
    if got and got[-1] == "":
        got.pop()
    if len(got) != len(lines):
        raise RuntimeError(f"PTBTokenizer returned {len(got)} lines for {len(lines)} texts")
    punct = set(PUNCTUATIONS)
    for i, line in zip(todo, got, strict=True):
        out[i] = " ".join(w for w in line.rstrip().split(" ") if w not in punct)
    return out


def ptb_tokenize_corpus(predictions: Sequence[str], references: Sequence[Sequence[str] | str]
                        ) -> tuple[list[str], list[list[str]]]:
    """Tokenise predictions (N,) and references (N, k_i) together in a single Java call."""
    refs = _check(predictions, references)
    flat = list(predictions) + [r for rs in refs for r in rs]
    tok = ptb_tokenize(flat)
    n = len(predictions)
    tok_refs, pos = [], n
    for rs in refs:
        tok_refs.append(tok[pos: pos + len(rs)])
        pos += len(rs)
    return tok[:n], tok_refs


# ------------------------------------------------------------------------------------------------ n-gram helpers


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


# -------------------------------------------------------------------------------------------- standard protocol


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


# ----------------------------------------------------------------------------------------------- paper protocol


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
