"""``copy-context``: a copying floor for generation tasks; it answers with a sentence of its input.

For each sample it returns the sentence of a neighbour's text (``nodes[1:]``, every node the harness put into
the sample) that shares the most distinct content words with the target node's own text (``nodes[0].text``,
the input without the answer). Words: lower-cased runs of letters and digits; content words leave out
scikit-learn's ``ENGLISH_STOP_WORDS`` list. Ties go to the nearer neighbour (hop, then sample order), then to
the earlier sentence. Sentences: the text split after ``.``, ``!`` or ``?`` followed by white space, and at
line breaks, each stripped.

Fallbacks, in order: no neighbour sentence shares a content word -> the target's own first sentence; the
target has no text -> the first sentence of the nearest neighbour with text; nothing has text -> "".
Every prediction is therefore a verbatim sentence (or the empty string) of the sample's node texts.

Nothing is trained: ``epochs`` is forced to 0, so the harness skips training and selection (validation is
scored once), as for ``labelprop``. ``max_new_tokens`` and ``num_beams`` do not apply (a copied sentence is
returned whole). It gives every generation leaderboard the score of copying from the context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mmbench.api import GenerationModel, GenerationTrainingData, GraphSample, TrainSchedule
from mmbench.registry import register_model

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_]+")


@dataclass
class CopyContextConfig(TrainSchedule):
    epochs: int = 0               # nothing to train: always 0 (any other value is reset)
    eval_every: int = 1
    patience: int = 0
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        self.epochs = 0


def sentences(text: str | None) -> list[str]:
    """'A b. C d!\\nE' -> ['A b.', 'C d!', 'E'] (empty pieces dropped)."""
    if not text:
        return []
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def content_words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS}


def copy_sentence(sample: GraphSample) -> str:
    """The sentence ``copy-context`` answers with for one sample (module docstring)."""
    own = sample.nodes[0].text or ""
    query = content_words(own)
    neighbours = sorted(enumerate(sample.nodes[1:], 1), key=lambda p: (p[1].hop if p[1].hop >= 0 else 1 << 30, p[0]))
    best, best_overlap = None, 0
    for _, node in neighbours:
        for sent in sentences(node.text):
            overlap = len(query & content_words(sent))
            if overlap > best_overlap:
                best, best_overlap = sent, overlap
    if best is not None:
        return best
    if sentences(own):
        return sentences(own)[0]
    for _, node in neighbours:
        if sentences(node.text):
            return sentences(node.text)[0]
    return ""


@register_model("copy-context")
class CopyContext(GenerationModel):
    description = "copies the neighbour sentence with the most word overlap with the target's text (no training)"
    Config = CopyContextConfig

    def setup(self, data: GenerationTrainingData, seed: int) -> None:
        self.samples_seen = len(data.train)

    def train_epoch(self, epoch: int) -> float:
        return 0.0

    def generate(self, samples: list[GraphSample], max_new_tokens: int, num_beams: int = 1) -> list[str]:
        return [copy_sentence(s) for s in samples]

    def describe(self) -> dict[str, Any]:
        return {"rule": "neighbour sentence with the most shared content words with the target's text "
                        "(scikit-learn English stop words removed; ties: nearest hop, then sample order)",
                "fallback": "the target's first sentence, else the nearest neighbour's first sentence, else ''",
                "trained": False}
