"""pycocoevalcap's PTB tokenisation (Stanford CoreNLP 3.4.1 through Java), batched in one call."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mmbench.metrics.text_scores import _LINE_BREAKS, _check


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
