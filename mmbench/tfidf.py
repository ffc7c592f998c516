"""Bag-of-words node features: TF-IDF with the vocabulary and IDF fitted on the training nodes' texts only.

scikit-learn's ``TfidfVectorizer`` (https://scikit-learn.org/stable/modules/feature_extraction.html#tfidf-term-weighting)
with its defaults: lower-cased, tokens of two or more word characters (``token_pattern``), smoothed IDF
``idf(t) = ln((1 + n) / (1 + df(t))) + 1`` over the n training documents, raw term counts times IDF, each row
L2-normalised. ``fit`` sees the texts of the view's ``train_nodes`` only (a word that occurs only in
valid/test texts is not in the vocabulary, and valid/test texts do not move any IDF); ``transform`` then
maps every node. ``max_features`` keeps the most frequent training terms (scikit-learn's rule); ``None`` =
the whole training vocabulary. Nodes without text (or with a text made only of unknown words) get an
all-zero row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mmbench.errors import ConfigError


def fit_tfidf(texts: Sequence[str | None], train_nodes: torch.Tensor | Sequence[int],
              max_features: int | None = None) -> tuple[Any, int]:
    """-> (the ``TfidfVectorizer`` fitted on the training nodes' texts, number of training documents used)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    ids = train_nodes.tolist() if isinstance(train_nodes, torch.Tensor) else list(train_nodes)
    train_docs = [texts[i] for i in ids if texts[i] is not None and texts[i].strip()]
    if not train_docs:
        raise ConfigError("features tfidf: no training node has a text to fit the vocabulary on")
    vec = TfidfVectorizer(max_features=max_features, dtype=np.float32)
    try:
        vec.fit(train_docs)
    except ValueError as e:  # "empty vocabulary; perhaps the documents only contain stop words"
        raise ConfigError(f"features tfidf: {e}") from None
    return vec, len(train_docs)


def tfidf_matrix(texts: Sequence[str | None], train_nodes: torch.Tensor | Sequence[int],
                 max_features: int | None = None) -> tuple[sp.csr_matrix, dict[str, Any]]:
    """texts (N,), train_nodes (n,) -> X (N, V) float32 CSR (rows L2-normalised), info (JSON-able).

    info: ``vocabulary`` V, ``fitted_on`` (training documents, those with text), ``max_features``, ``source``.
    """
    vec, fitted_on = fit_tfidf(texts, train_nodes, max_features)
    x = sp.csr_matrix(vec.transform([t if t is not None else "" for t in texts]), dtype=np.float32)
    info = {"vocabulary": len(vec.vocabulary_), "fitted_on": fitted_on, "max_features": max_features,
            "source": "scikit-learn TfidfVectorizer fitted on training-node texts"}
    return x, info
