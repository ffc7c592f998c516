"""``mm-concat``: structure embeddings concatenated with projected modality features (IKRL/TBKGC style).

entity(e) = LayerNorm(W [s_e ; text(e) ; image(e)]), where text/image come from pre-extracted
features or token bags (``mmbench.models.modality``). The decoder and the 1-vs-all training are the
TuckER baseline's (``baselines/one_to_all.py``), so ``--set use_text=false use_image=false`` is the
same network on structure alone: the difference between the two is what the modalities add.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from baselines.one_to_all import DistMultDecoder, OneToAllModel, OneToAllNet, TuckERConfig, TuckERDecoder
from mmbench.api import KGTrainingData
from mmbench.errors import ConfigError
from mmbench.models.modality import modality_encoders
from mmbench.registry import register_model


@dataclass
class MMConcatConfig(TuckERConfig):
    decoder: str = "tucker"
    modal_dim: int = 64
    use_text: bool = True
    use_image: bool = True


class MMConcatNet(OneToAllNet):
    def __init__(self, data: KGTrainingData, c: MMConcatConfig, decoder: nn.Module):
        super().__init__(data.num_entities, c.dim, decoder)
        self.modal = modality_encoders(data.modalities, c.modal_dim, {"text": c.use_text, "image": c.use_image})
        self.fuse = nn.Linear(c.dim + c.modal_dim * len(self.modal), c.dim)
        self.norm = nn.LayerNorm(c.dim)

    def entities(self) -> torch.Tensor:
        """-> (num_entities, dim)"""
        parts = [self.ent.weight] + [enc() for enc in self.modal.values()]
        return self.norm(self.fuse(torch.cat(parts, 1)))


@register_model("mm-concat")
class MMConcat(OneToAllModel):
    description = "Multimodal baseline: structure embedding + projected text/image features, TuckER 1-vs-all"
    Config = MMConcatConfig
    # chosen on synth-mmkg validation MRR (seed 0) from {0.002, 0.005}
    presets = {"synth-mmkg": dict(lr=0.002)}

    def build(self, data: KGTrainingData) -> OneToAllNet:
        c = self.config
        n_rel = 2 * data.num_relations
        if c.decoder == "tucker":
            decoder: nn.Module = TuckERDecoder(n_rel, c.dim, c.rel_dim)
        elif c.decoder == "distmult":
            decoder = DistMultDecoder(n_rel, c.dim, c.input_dropout)
        else:
            raise ConfigError(f"mm-concat: decoder must be 'tucker' or 'distmult', got {c.decoder!r}")
        return MMConcatNet(data, c, decoder)
