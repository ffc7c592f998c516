"""Structure-only KGE baselines wrapping PyKEEN's models and training loops (TransE, RotatE).

PyKEEN trains; mmbench drives the epochs (validation selection) and ranks the scores itself.
DistMult, ComplEx and TuckER live in ``baselines/one_to_all.py`` (see there why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mmbench import paths
from mmbench.api import KGCModel, KGTrainingData, TrainSchedule
from mmbench.registry import register_model


@dataclass
class KGEConfig(TrainSchedule):
    """Hyperparameters shared by the PyKEEN baselines.

    training_loop: 'slcwa' (negative sampling) or 'lcwa' (1-vs-all over entities)
    loss: a PyKEEN loss name, '' for the model's default
    num_negs: negatives per positive (sLCWA only)
    """

    epochs: int = 200
    eval_every: int = 10
    patience: int = 3
    embedding_dim: int = 128
    lr: float = 0.005
    batch_size: int = 512
    training_loop: str = "slcwa"
    loss: str = ""
    num_negs: int = 32
    label_smoothing: float = 0.0
    inverse_triples: bool = False
    regularizer: str = "default"    # 'default' keeps the PyKEEN model's own, 'none' switches it off


class PyKEENModel(KGCModel):
    """Adapter base: subclasses name the PyKEEN model class and its extra constructor arguments."""

    pykeen_model: ClassVar[str] = ""
    Config: ClassVar[type] = KGEConfig

    def model_kwargs(self) -> dict[str, Any]:
        return {"embedding_dim": self.config.embedding_dim}

    def setup(self, data: KGTrainingData, seed: int) -> None:
        paths.use_cache_for_pystow()
        from pykeen.models import model_resolver
        from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop
        from pykeen.triples import CoreTriplesFactory
        from pykeen.utils import set_random_seed

        c = self.config
        set_random_seed(seed)
        self.factory = CoreTriplesFactory.create(data.train, num_entities=data.num_entities,
                                                 num_relations=data.num_relations,
                                                 create_inverse_triples=c.inverse_triples)
        kwargs = self.model_kwargs()
        if c.loss:
            kwargs["loss"] = c.loss
        if c.regularizer == "none":
            kwargs["regularizer"] = None
        self.module = model_resolver.make(self.pykeen_model, triples_factory=self.factory, random_seed=seed,
                                          **kwargs).to(self.device)  # PyKEEN's loops follow the model's device
        optimizer = torch.optim.Adam(self.module.parameters(), lr=c.lr)
        if c.training_loop == "lcwa":
            self.loop = LCWATrainingLoop(model=self.module, triples_factory=self.factory, optimizer=optimizer)
        else:
            self.loop = SLCWATrainingLoop(model=self.module, triples_factory=self.factory, optimizer=optimizer,
                                          negative_sampler_kwargs={"num_negs_per_pos": c.num_negs})

    def train_epoch(self, epoch: int) -> float:
        return self.train_epochs(epoch, 1)[0]

    def train_epochs(self, first: int, count: int) -> list[float]:
        # One PyKEEN call per chunk: each call runs gc.collect() and rebuilds its data loader.
        self.module.train()
        losses = self.loop.train(triples_factory=self.factory, num_epochs=first + count - 1,
                                 continue_training=first > 1, batch_size=self.config.batch_size,
                                 label_smoothing=self.config.label_smoothing, use_tqdm=False,
                                 use_tqdm_batch=False, pin_memory=False)
        return [float(x) for x in (losses or [])][-count:]

    def score_tails(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        return self.module.predict_t(torch.stack([heads, relations], 1))

    def score_heads(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        return self.module.predict_h(torch.stack([relations, tails], 1))


@register_model("transe")
class TransE(PyKEENModel):
    description = "TransE (Bordes et al. 2013), PyKEEN, negative sampling, structure only"
    pykeen_model = "TransE"
    # chosen on synth-mmkg validation MRR (seed 0) from {0.005, 0.02}
    presets = {"synth-mmkg": dict(lr=0.02)}


@dataclass
class RotatEConfig(KGEConfig):
    loss: str = "nssa"


@register_model("rotate")
class RotatE(PyKEENModel):
    description = "RotatE (Sun et al. 2019), PyKEEN, self-adversarial negative sampling, structure only"
    pykeen_model = "RotatE"
    Config = RotatEConfig
