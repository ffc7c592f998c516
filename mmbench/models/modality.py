"""Turn an entity's optional modalities into fixed-size vectors (shared by KGC adapters)."""

from __future__ import annotations

import torch
from torch import nn

from mmbench.api import EntityModalities, FeatureSet, TokenBags


class TokenBagEncoder(nn.Module):
    """Mean of token embeddings per entity, projected to ``dim``.

    With a given embedding table (codebook, frozen word embeddings) the table stays frozen and only
    the projection trains; otherwise the token embeddings are learned (a linear map of the bag of words).
    Entities without tokens get a learned 'absent' vector.
    """

    def __init__(self, bags: TokenBags, dim: int):
        super().__init__()
        self.register_buffer("ids", bags.ids.clone(), persistent=False)
        self.register_buffer("offsets", bags.offsets[:-1].clone(), persistent=False)
        self.register_buffer("present", (bags.counts() > 0).clone(), persistent=False)
        if bags.embeddings is not None:
            self.table = nn.EmbeddingBag.from_pretrained(bags.embeddings.float(), freeze=True, mode="mean")
            self.proj: nn.Module = nn.Linear(bags.embeddings.shape[1], dim)
        else:
            self.table = nn.EmbeddingBag(bags.vocab_size, dim, mode="mean")
            nn.init.normal_(self.table.weight, std=dim ** -0.5)
            self.proj = nn.Identity()
        self.absent = nn.Parameter(torch.zeros(dim))

    def forward(self) -> torch.Tensor:
        """-> (num_entities, dim)"""
        pooled = self.proj(self.table(self.ids, self.offsets))
        return torch.where(self.present[:, None], pooled, self.absent)


class FeatureEncoder(nn.Module):
    """Standardised pre-extracted features (patches mean-pooled) -> Linear -> ``dim``; absent -> learned vector."""

    def __init__(self, features: FeatureSet, dim: int):
        super().__init__()
        x = features.pooled().float()
        present = features.present.bool()
        mu = x[present].mean(0) if present.any() else torch.zeros(x.shape[1])
        sd = x[present].std(0).clamp_min(1e-6) if present.sum() > 1 else torch.ones(x.shape[1])
        self.register_buffer("x", (x - mu) / sd * present[:, None], persistent=False)
        self.register_buffer("present", present.clone(), persistent=False)
        self.proj = nn.Linear(x.shape[1], dim)
        self.absent = nn.Parameter(torch.zeros(dim))

    def forward(self) -> torch.Tensor:
        """-> (num_entities, dim)"""
        return torch.where(self.present[:, None], self.proj(self.x), self.absent)


def modality_encoders(m: EntityModalities, dim: int, use: dict[str, bool]) -> nn.ModuleDict:
    """One encoder per available modality: pre-extracted features win over tokens for the same name."""
    encoders = nn.ModuleDict()
    for name, bags in m.tokens.items():
        if use.get(name, True):
            encoders[name] = TokenBagEncoder(bags, dim)
    for name, feats in m.features.items():
        if use.get(name, True):
            encoders[name] = FeatureEncoder(feats, dim)
    return encoders
