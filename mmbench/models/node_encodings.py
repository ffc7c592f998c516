"""Frozen-encoder tables for the node texts and images of assembled samples, keyed by content.

A model that reads neighbours through frozen encoders (MMGL, Graph4MM, VW-LMM) calls ``add(samples)`` once
for all its train/valid/test samples in ``setup``: every distinct text and image file is encoded once
(``mmbench.backbones.encode_texts`` / ``encode_images``, disk-cached by encoder identity and content, so a
second run reads them back) and gets a row in a table on the model's device. Samples first seen later (e.g.
in ``generate``) are added on demand; no epoch re-encodes anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mmbench.api import GraphSample
from mmbench.backbones import encode_images, encode_texts


class NodeEncodings:
    """text_table (n_texts, D_text) and image_table (n_images, D_img) or, with ``image_patches``,
    (n_images, P, D_patch); rows found by ``text_row(text)`` / ``image_row(path)`` (-1 = absent/unreadable).

    text_encoder / image_encoder: backbone names (None: that modality is not encoded)
    target_text: also encode each sample's target text (``nodes[0].text``); False when the model reads the
                 target's text as LM tokens instead
    image_transform: applied to each batch of new image rows before they join the table (e.g. pooling a
                 patch grid), (n, ...) -> (n, ...)
    """

    def __init__(self, text_encoder: str | None, image_encoder: str | None, device: torch.device | str = "cpu",
                 *, image_patches: bool = False, target_text: bool = False, max_length: int = 256,
                 progress: Any = None, image_transform: Any = None):
        self.text_encoder, self.image_encoder = text_encoder, image_encoder
        self.device = torch.device(device)
        self.image_patches, self.target_text, self.max_length = image_patches, target_text, max_length
        self.progress, self.image_transform = progress, image_transform
        self._texts: dict[str, int] = {}
        self._images: dict[str, int] = {}
        self.text_table: torch.Tensor | None = None
        self.image_table: torch.Tensor | None = None

    def _texts_of(self, samples: Iterable[GraphSample]) -> set[str]:
        start = 0 if self.target_text else 1
        return {n.text for s in samples for n in s.nodes[start:] if n.text and n.text.strip()}

    def add(self, samples: Iterable[GraphSample]) -> None:
        """Encode every text and image of ``samples`` that has no row yet (one encoder call per modality)."""
        samples = list(samples)
        if self.text_encoder is not None:
            new = sorted(self._texts_of(samples) - set(self._texts))
            if new or self.text_table is None:
                values, _ = encode_texts(new, self.text_encoder, max_length=self.max_length, device=self.device,
                                         progress=self.progress)  # an empty list still gives the width
                start = 0 if self.text_table is None else len(self.text_table)
                values = values.to(self.device)
                self.text_table = values if self.text_table is None else torch.cat([self.text_table, values])
                self._texts.update({t: start + i for i, t in enumerate(new)})
        if self.image_encoder is not None:
            new = sorted({n.image for s in samples for n in s.nodes if n.image} - set(self._images))
            if new or self.image_table is None:
                values, present = encode_images(new, self.image_encoder, patches=self.image_patches,
                                                device=self.device, progress=self.progress)
                start = 0 if self.image_table is None else len(self.image_table)
                if self.image_transform is not None:
                    values = self.image_transform(values)
                values = values.to(self.device)
                self.image_table = values if self.image_table is None else torch.cat([self.image_table, values])
                self._images.update({p: start + i if bool(present[i]) else -1 for i, p in enumerate(new)})

    def text_row(self, text: str | None) -> int:
        return self._texts.get(text, -1) if text and text.strip() else -1

    def image_row(self, path: str | None) -> int:
        return self._images.get(path, -1) if path else -1

    @property
    def text_dim(self) -> int:
        return int(self.text_table.shape[-1]) if self.text_table is not None else 0

    @property
    def image_dim(self) -> int:
        return int(self.image_table.shape[-1]) if self.image_table is not None else 0

    def counts(self) -> dict[str, int]:
        return {"texts": len(self._texts), "images": sum(v >= 0 for v in self._images.values())}
