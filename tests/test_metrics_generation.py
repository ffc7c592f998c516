"""Generation metrics: hand-checked values and cross-checks against pycocoevalcap, sacrebleu and rouge-score."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from mmbench.metrics.generation import (
    GenerationScores,
    _CiderStats,
    coco_scores,
    graph4mm_postprocess,
    lcs_length,
    paper_metrics,
    ptb_tokenize,
    ptb_tokenize_corpus,
    sacrebleu_scores,
    standard_metrics,
)

pytest.importorskip("pycocoevalcap")

WORDS = ("the a dog cat runs sat on mat park big small red blue house tree river man woman rides horse "
         "street near two three").split()


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
    if words and rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice([".", "!", "", " ,", "?"])


def _corpus(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    preds = [_sentence(rng, 1, 12) for _ in range(n)]
    refs = [[_sentence(rng, 3, 12) for _ in range(rng.randint(1, 4))] for _ in range(n)]
    return preds, refs


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[list[str]]]:
    """60 samples, 1-4 references each; an empty and a punctuation-only prediction in the middle."""
    preds, refs = _corpus(60, 0)
    preds[5] = ""
    preds[11] = "... , ; !"
    preds[17] = refs[17][0]  # an exact match
    return preds, refs


@pytest.fixture(scope="module")
def standard(corpus) -> GenerationScores:
    return standard_metrics(*corpus)


@pytest.fixture(scope="module")
def pyco_tokenized(corpus) -> tuple[list[str], list[list[str]]]:
    """The corpus tokenised by pycocoevalcap's own PTBTokenizer, as COCOEvalCap does it."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    preds, refs = corpus
    captions = {("p", i): [{"caption": p}] for i, p in enumerate(preds)}
    captions.update({("r", i): [{"caption": r} for r in rs] for i, rs in enumerate(refs)})
    tok = PTBTokenizer().tokenize(captions)
    return [tok[("p", i)][0] for i in range(len(preds))], [tok[("r", i)] for i in range(len(refs))]


# ---------------------------------------------------------------------------------------------------- tokenizer


def test_ptb_tokenize_matches_pycocoevalcap(corpus, pyco_tokenized):
    assert ptb_tokenize_corpus(*corpus) == pyco_tokenized
    assert pyco_tokenized[0][5] == "" and pyco_tokenized[0][11] == ""  # empty and punctuation-only


def test_ptb_tokenize_alignment_edge_cases():
    texts = ["Hello, World!", "", "a\rb", "line1\nline2", "   ", "café — ok", "...", "Don't (stop)",
             "x\u2028y", "last", ""]
    assert ptb_tokenize(texts) == ["hello world", "", "a b", "line1 line2", "", "café ok", "",
                                   "do n't -lrb- stop -rrb-", "x y", "last", ""]
    assert ptb_tokenize([]) == [] and ptb_tokenize(["", " "]) == ["", ""]  # no Java needed


# ---------------------------------------------------------------------------------------------------- standard


def test_standard_equals_pycocoevalcap_scorers(standard, pyco_tokenized):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    tok_preds, tok_refs = pyco_tokenized
    gts = {i: r for i, r in enumerate(tok_refs)}
    res = {i: [p] for i, p in enumerate(tok_preds)}
    bleu, bleu_ps = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_ps = Rouge().compute_score(gts, res)
    cider, cider_ps = Cider().compute_score(gts, res)
    assert set(standard) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider", "sacrebleu"}
    for k in range(4):
        assert standard[f"bleu{k + 1}"] == pytest.approx(bleu[k], abs=1e-9)
        np.testing.assert_allclose(standard.per_sample[f"bleu{k + 1}"], bleu_ps[k], atol=1e-9)
    assert standard["rouge_l"] == pytest.approx(rouge, abs=1e-9)
    assert standard["cider"] == pytest.approx(cider, abs=1e-9)
    np.testing.assert_allclose(standard.per_sample["rouge_l"], rouge_ps, atol=1e-9)
    np.testing.assert_allclose(standard.per_sample["cider"], cider_ps, atol=1e-9)
    assert 0 < standard["bleu4"] < standard["bleu1"] < 1 and standard["cider"] > 0


def test_standard_edge_samples(standard):
    for i in (5, 11):  # empty and punctuation-only predictions: nothing matches
        assert standard.per_sample["rouge_l"][i] == 0.0
        assert standard.per_sample["cider"][i] == 0.0
        assert standard.per_sample["bleu1"][i] < 1e-9
    assert standard.per_sample["bleu1"][17] == pytest.approx(1.0, abs=1e-6)  # exact match
    assert standard.per_sample["rouge_l"][17] == pytest.approx(1.0)


def test_sacrebleu_equals_corpus_bleu(corpus, standard):
    import sacrebleu

    preds, refs = corpus
    streams = [[rs[j] if j < len(rs) else None for rs in refs] for j in range(4)]
    assert standard["sacrebleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score, abs=1e-9)
    single = [rs[0] for rs in refs]
    ours = sacrebleu_scores(preds, [[r] for r in single])["sacrebleu"]
    assert ours == pytest.approx(sacrebleu.corpus_bleu(preds, [single]).score, abs=1e-9)
    assert 0 < ours < 100


def test_standard_resample_recomputes_on_the_resample(corpus, standard, pyco_tokenized):
    import sacrebleu

    tok_preds, tok_refs = pyco_tokenized
    preds, refs = corpus
    assert standard.resample(np.arange(standard.n)) == pytest.approx(dict(standard), abs=1e-9)
    rng = np.random.default_rng(3)
    for size in (60, 25):
        idx = rng.integers(0, standard.n, size=size)  # with repeats
        want = dict(coco_scores([tok_preds[i] for i in idx], [tok_refs[i] for i in idx]))
        sub_refs = [refs[i] for i in idx]
        streams = [[rs[j] if j < len(rs) else None for rs in sub_refs] for j in range(4)]
        want["sacrebleu"] = sacrebleu.corpus_bleu([preds[i] for i in idx], streams).score
        assert standard.resample(idx) == pytest.approx(want, abs=1e-9)


def test_coco_bleu_exact_match_and_mapping_api():
    s = coco_scores(["a man rides a horse"], [["a man rides a horse", "someone on a horse"]])
    for k in range(1, 5):
        assert s[f"bleu{k}"] == pytest.approx(1.0, abs=1e-6)
    assert dict(s).keys() == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
    assert len(s) == 6 and s.n == 1
    assert s == dict(s.corpus)


def test_coco_all_references_empty_does_not_crash():
    s = coco_scores(["a dog", ""], [[""], [""]])
    assert s["cider"] == 0.0 and s["bleu1"] < 1e-9
    assert s.resample(np.array([0, 1, 1]))["cider"] == 0.0


def test_cider_identical_corpus_matches_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider

    _, refs = _corpus(30, 1)
    caps = [rs[0].lower().rstrip(".!?, ") for rs in refs]
    gts = {i: [c] for i, c in enumerate(caps)}
    want, _ = Cider().compute_score(gts, {i: [c] for i, c in enumerate(caps)})
    got = coco_scores(caps, [[c] for c in caps])
    assert got["cider"] == pytest.approx(want, abs=1e-9)
    assert got.resample(np.arange(30))["cider"] == pytest.approx(want, abs=1e-9)
    assert want > 1.0  # identical captions score high (x10 scale)


def test_vectorised_cider_matches_pycocoevalcap_on_resamples():
    from pycocoevalcap.cider.cider import Cider

    preds, refs = _corpus(40, 2)
    preds = [p.lower() for p in preds]
    stats = _CiderStats([p.split() for p in preds], [[r.split() for r in rs] for rs in refs])
    rng = np.random.default_rng(0)
    for idx in (np.arange(40), rng.integers(0, 40, 40), rng.integers(0, 40, 7)):
        sub_p, sub_r = [preds[i] for i in idx], [refs[i] for i in idx]
        want, want_ps = Cider().compute_score(dict(enumerate(sub_r)), {j: [p] for j, p in enumerate(sub_p)})
        w = np.bincount(idx, minlength=40).astype(float)
        assert stats.corpus(w) == pytest.approx(want, abs=1e-9)
        np.testing.assert_allclose(stats.per_sample(w)[idx], want_ps, atol=1e-9)


# ------------------------------------------------------------------------------------------------------- paper


def test_paper_bleu_by_hand():
    # sample 1: c=6, closest r=6; unigram clip 5/6 (sat unmatched); bigrams "the cat", "on the", "the mat": 3/5
    # sample 2: c=2, refs of length 3 and 5 -> r=3; unigrams 2/2; bigram "a dog" unmatched: 0/1
    preds = ["the cat sat on the mat", "a dog"]
    refs = [["the cat is on the mat"], ["a big dog", "the dog runs fast today"]]
    s = paper_metrics(preds, refs)
    bp = math.exp(1 - 9 / 8)
    assert s["bleu1"] == pytest.approx(bp * 7 / 8, abs=1e-12)
    assert s["bleu2"] == pytest.approx(bp * math.sqrt(7 / 8 * 3 / 6), abs=1e-12)
    # sample 1 alone: no brevity penalty (C = R), BLEU-2 = sqrt(5/6 * 3/5)
    one = paper_metrics(preds[:1], refs[:1])
    assert one["bleu1"] == pytest.approx(5 / 6, abs=1e-12)
    assert one["bleu2"] == pytest.approx(math.sqrt(0.5), abs=1e-12)
    # trigrams: "on the mat" only -> 1/4; 4-grams: none -> BLEU-4 = 0 (no smoothing)
    assert one["bleu3"] == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), abs=1e-12)
    assert one["bleu4"] == 0.0


def test_paper_bleu_exact_match_case_and_tie_break():
    assert paper_metrics(["A man rides a horse ."], [["A man rides a horse ."]])["bleu4"] == 1.0
    cased = paper_metrics(["A man"], [["a man"]])  # no lowercasing: only "man" matches
    assert cased["bleu1"] == 0.5 and cased["bleu2"] == 0.0
    # closest-length tie (|4-5| = |4-3|): torchmetrics takes the first reference (5), pycocoevalcap the shorter (3)
    s = paper_metrics(["a b c d"], [["a b c d e", "a b c"]])
    assert s["bleu1"] == pytest.approx(math.exp(1 - 5 / 4), abs=1e-12)
    assert coco_scores(["a b c d"], [["a b c d e", "a b c"]])["bleu1"] == pytest.approx(1.0, abs=1e-6)


def test_paper_rouge_l_by_hand():
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 -> P = R = F = 5/6
    # normalised "a police officer walking" vs "the police officer was walking home": LCS 3, P 3/4, R 1/2, F 0.6
    s = paper_metrics(["the cat sat on the mat", "A police-officer, walking."],
                      [["the cat is on the mat"], ["The police officer was walking home"]])
    np.testing.assert_allclose(s.per_sample["rouge_l"], [5 / 6, 0.6], atol=1e-12)
    assert s["rouge_l"] == pytest.approx((5 / 6 + 0.6) / 2, abs=1e-12)


def test_paper_rouge_l_equals_torchmetrics_with_several_references():
    """The public code's scorer, ``torchmetrics ROUGEScore()`` with ``accumulate='best'``, as of the torchmetrics
    release current when that code was published (1.7; the dev extra pins it): the best ROUGE-L over references
    (ref 1 wins on ROUGE-1 but has ROUGE-L 0.25, ref 2 gives 6/7 and is taken)."""
    import warnings

    from torchmetrics.text.rouge import ROUGEScore

    def library(pred, refs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(ROUGEScore(rouge_keys=("rouge1", "rougeL"))([pred], [refs])["rougeL_fmeasure"])

    assert paper_metrics(["a b c d"], [["d c b a", "a b c"]])["rouge_l"] == pytest.approx(6 / 7, abs=1e-12)
    preds, refs = _corpus(40, 3)
    preds[5] = ""
    s = paper_metrics(preds, refs)
    want = [library(p, list(rs)) for p, rs in zip(preds, refs, strict=True)]
    assert any(len(rs) > 1 for rs in refs)
    np.testing.assert_allclose(s.per_sample["rouge_l"], want, atol=1e-6)  # torchmetrics computes in float32


def test_paper_rouge_l_equals_rouge_score():
    from rouge_score import rouge_scorer

    preds, refs = _corpus(50, 4)
    preds[3] = ""
    preds[7] = "?!"
    single = [rs[0] for rs in refs]
    s = paper_metrics(preds, [[r] for r in single])
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    want = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, single, strict=True)]
    np.testing.assert_allclose(s.per_sample["rouge_l"], want, atol=1e-12)
    assert s["rouge_l"] == pytest.approx(float(np.mean(want)), abs=1e-12)


def test_lcs_length_matches_dynamic_programming():
    rng = random.Random(5)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 12))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
        assert lcs_length(a, b) == table[-1][-1]


def test_paper_cider_is_pycocoevalcap_on_raw_tokens():
    from pycocoevalcap.cider.cider import Cider

    preds, refs = _corpus(30, 6)
    s = paper_metrics(preds, refs)
    want, _ = Cider().compute_score({i: r for i, r in enumerate(refs)}, {i: [p] for i, p in enumerate(preds)})
    assert s["cider"] == pytest.approx(want, abs=1e-9)


def test_paper_resample_and_edge_cases():
    preds, refs = _corpus(40, 7)
    preds[0], preds[1] = "", "..."
    s = paper_metrics(preds, refs)
    assert s.per_sample["rouge_l"][0] == 0.0 and s.per_sample["cider"][0] == 0.0
    assert s.resample(np.arange(40)) == pytest.approx(dict(s), abs=1e-9)
    idx = np.random.default_rng(1).integers(0, 40, 40)
    want = paper_metrics([preds[i] for i in idx], [refs[i] for i in idx])
    assert s.resample(idx) == pytest.approx(dict(want), abs=1e-9)
    empty = paper_metrics(["", ""], [["a b"], ["c"]])
    assert dict(empty) == {"bleu1": 0.0, "bleu2": 0.0, "bleu3": 0.0, "bleu4": 0.0, "rouge_l": 0.0, "cider": 0.0}


def test_graph4mm_postprocess():
    assert graph4mm_postprocess("The river flows. Then more.") == "The river flows"
    assert graph4mm_postprocess("Dr. Who is here.") == "Dr. Who is here."  # '.' at index 2 <= 5: kept
    assert graph4mm_postprocess("no period") == "no period"
    s = paper_metrics(["the cat sat. junk junk"], [["the cat sat"]], postprocess=True)
    assert s["bleu1"] == 1.0 and paper_metrics(["the cat sat. junk junk"], [["the cat sat"]])["bleu1"] < 1.0


def test_input_validation():
    with pytest.raises(ValueError, match="predictions"):
        paper_metrics(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="no samples"):
        paper_metrics([], [])
    with pytest.raises(ValueError, match="no reference"):
        paper_metrics(["a"], [[]])
    assert paper_metrics(["a b"], ["a b"])["bleu1"] == 1.0  # a bare string is one reference
    with pytest.raises(IndexError):
        paper_metrics(["a b"], ["a b"]).resample(np.array([1]))


@pytest.mark.slow
def test_standard_with_meteor():
    preds = ["A man rides a horse.", "", "two dogs play in the park"]
    refs = [["a man rides a horse"], ["a cat sleeps"], ["dogs playing in a park", "two dogs in the grass"]]
    s = standard_metrics(preds, refs, meteor=True)
    assert set(s) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider", "meteor", "sacrebleu"}
    ps = s.per_sample["meteor"]
    assert ps[0] > 0.9 and ps[1] == 0.0 and 0 < ps[2] < 1
    assert 0 < s["meteor"] < 1
    assert "meteor" not in s.resample(np.arange(3))


@pytest.mark.slow
def test_meteor_is_the_jars_corpus_aggregate_not_the_mean_of_items(tmp_path):
    """The reported METEOR is the METEOR 1.5 jar's own corpus score (its 'Final score', from pooled statistics),
    run here separately in file mode on the same (already lower-case, punctuation-free) texts."""
    import shutil
    import subprocess

    from pycocoevalcap.meteor import meteor as meteor_module

    if shutil.which("java") is None:
        pytest.skip("METEOR needs Java")
    preds = ["a man rides a horse", "", "two dogs play in the park", "a red car is parked"]
    refs = [["a man rides a horse", "a man riding a horse"], ["a cat sleeps", "a cat is sleeping"],
            ["dogs playing in a park", "two dogs in the grass"], ["the car is red", "a parked red car"]]
    (tmp_path / "hyp.txt").write_text("".join(p + "\n" for p in preds))
    (tmp_path / "ref.txt").write_text("".join(r + "\n" for rs in refs for r in rs))
    jar = Path(meteor_module.__file__).parent / meteor_module.METEOR_JAR
    out = subprocess.run(["java", "-Xmx2G", "-jar", str(jar), "hyp.txt", "ref.txt", "-l", "en", "-norm", "-r", "2"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    final = float(next(line for line in out.splitlines() if line.startswith("Final score:")).split()[-1])
    s = standard_metrics(preds, refs, meteor=True)
    assert s["meteor"] == pytest.approx(final, abs=1e-12)
    assert abs(s["meteor"] - float(np.mean(s.per_sample["meteor"]))) > 0.05  # 0.393 vs 0.451 here
