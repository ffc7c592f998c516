"""MM-QFormer of Graph4MM (Ning et al., ICML 2025, arXiv 2510.16990; public code github.com/YennNing/Graph4MM,
``model/modelling_self_attention.py``, ``MultiLayerTranslator`` / ``TranslatorLayer``): learned queries that read
the (diffused) text nodes through a shared self-attention and the (diffused) image nodes through cross-attention,
then an FFN; block order ``paper`` or ``public``.

Differences from the public code, on purpose: key padding masks are applied (padded text or image nodes never
influence the queries), and a sample without text or image nodes yields finite outputs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


def _image_keys(image: Tensor | None, mask: Tensor | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Cross-attention keys: (image (B, n_i, d) with pads zeroed, key padding mask (B, n_i) True = ignore,
    has_image (B,) float), or Nones when there are no image positions at all.

    A sample without any real image keeps one (zeroed) key unmasked so the softmax stays finite; its
    cross-attention output is multiplied by has_image = 0 afterwards.
    """
    if image is None or image.size(1) == 0:
        return None, None, None
    mask = torch.ones(image.shape[:2], dtype=torch.bool, device=image.device) if mask is None else mask.bool()
    image = image.masked_fill(~mask.unsqueeze(-1), 0.0)
    has = mask.any(1)
    pad = ~mask
    pad[:, 0] &= has
    return image, pad, has.to(image.dtype)


class QFormerBlock(nn.Module):
    """One MM-QFormer block on queries ``q (B, Q, d)``; returns (B, Q, d).

    order "paper": q = LN(q + SA(q, [q; text])); q = LN(q + CA(q, image)); q = LN(q + FFN(q)).
    order "public" (public ``TranslatorLayer``): q = LN(q + SA(q, q)); q = LN(q + CA(q, image));
    q = SA(q, [q; text]) with the same SA module, no residual or LN; q = LN(q + FFN(q)).
    SA(q, x) attends from the queries to x and keeps the query rows only, which equals running self-attention
    over [q; text] and keeping the query part (text rows are never fed back; the public code passes the same
    text nodes to every layer). FFN: Linear(d, ffn_dim) -> ReLU -> Linear(ffn_dim, d).
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, order: Literal["paper", "public"] = "paper",
                 dropout: float = 0.0):
        super().__init__()
        if order not in ("paper", "public"):
            raise ValueError(f"order must be 'paper' or 'public', got {order!r}")
        self.order = order
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def _shared(self, q: Tensor, text: Tensor | None, text_pad: Tensor | None) -> Tensor:
        """SA(q, [q; text]) with text pads masked; the queries are never masked, so no row is empty."""
        if text is None:
            return self.self_attn(q, q, q, need_weights=False)[0]
        x = torch.cat([q, text], 1)
        pad = torch.cat([text_pad.new_zeros(q.shape[:2]), text_pad], 1)
        return self.self_attn(q, x, x, key_padding_mask=pad, need_weights=False)[0]

    def _cross(self, q: Tensor, image: Tensor | None, image_pad: Tensor | None, has_image: Tensor | None) -> Tensor:
        if image is None:
            return torch.zeros_like(q)
        out = self.cross_attn(q, image, image, key_padding_mask=image_pad, need_weights=False)[0]
        return out * has_image.view(-1, 1, 1)

    def forward(self, q: Tensor, text: Tensor | None, text_pad: Tensor | None, image: Tensor | None,
                image_pad: Tensor | None, has_image: Tensor | None) -> Tensor:
        """q (B, Q, d); text (B, n_t, d) pads zeroed + text_pad (B, n_t) True = pad; image (B, n_i, d) +
        image_pad (B, n_i) + has_image (B,) from ``_image_keys``; text/image may be None."""
        if self.order == "paper":
            q = self.norm1(q + self.drop(self._shared(q, text, text_pad)))
            q = self.norm2(q + self.drop(self._cross(q, image, image_pad, has_image)))
        else:
            q = self.norm1(q + self.drop(self.self_attn(q, q, q, need_weights=False)[0]))
            q = self.norm2(q + self.drop(self._cross(q, image, image_pad, has_image)))
            q = self._shared(q, text, text_pad)
        return self.norm3(q + self.drop(self.ffn(q)))


class MMQFormer(nn.Module):
    """MM-QFormer (paper; public ``MultiLayerTranslator`` without its input/output projections).

    dim: width d; num_queries: learned queries (public code: 5 image slots x 4 tokens = 20); heads (public 12);
    ffn_dim: FFN width (default 4 d, as the public code); layers: L blocks (paper and public code: 1);
    order: "paper" or "public" (see ``QFormerBlock``); query_init_std: queries ~ N(0, std^2) (public: randn, 1.0).

    forward(text (B, n_t, d) | None, text_mask (B, n_t) bool True = real | None, image (B, n_i, d) | None,
    image_mask (B, n_i) | None) -> (B, num_queries, d). Missing masks mean all real. Padded positions never
    influence the output (masked and zeroed); samples with no text or no image node are handled (no NaN).
    """

    def __init__(self, dim: int, num_queries: int, heads: int = 1, ffn_dim: int | None = None, layers: int = 1,
                 order: Literal["paper", "public"] = "paper", dropout: float = 0.0, query_init_std: float = 1.0):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * query_init_std)
        self.blocks = nn.ModuleList(QFormerBlock(dim, heads, ffn_dim or 4 * dim, order, dropout)
                                    for _ in range(layers))

    def forward(self, text: Tensor | None = None, text_mask: Tensor | None = None, image: Tensor | None = None,
                image_mask: Tensor | None = None) -> Tensor:
        present = [x for x in (text, image) if x is not None]
        if not present:
            raise ValueError("MMQFormer needs text or image inputs (for the batch size)")
        batch_size = present[0].size(0)
        text_pad = None
        if text is not None and text.size(1) == 0:
            text = None
        if text is not None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device) if text_mask is None \
                else text_mask.bool()
            text = text.masked_fill(~text_mask.unsqueeze(-1), 0.0)
            text_pad = ~text_mask
        image, image_pad, has_image = _image_keys(image, image_mask)
        q = self.queries.unsqueeze(0).expand(batch_size, -1, -1)
        for block in self.blocks:
            q = block(q, text, text_pad, image, image_pad, has_image)
        return q
