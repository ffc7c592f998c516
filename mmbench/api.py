"""The adapter protocols: what a model receives and what it must return, one protocol per task family.

A model plugs into mmbench by subclassing the family's base class (``KGCModel`` for knowledge-graph
completion) and registering it (see ``mmbench.registry``). The harness owns the training schedule's
selection logic, the held-back test answers and the metrics; the adapter only trains and scores.
"""

from __future__ import annotations

import copy
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


# --------------------------------------------------------------------------- modalities
@dataclass(frozen=True)
class TokenBags:
    """Ragged per-entity token id lists in CSR form (duplicates kept, in source order).

    ids:      (total,) long     token ids, entity ``e`` owns ``ids[offsets[e]:offsets[e+1]]``
    offsets:  (num_entities + 1,) long
    vocab_size: number of distinct ids the vocabulary can produce
    embeddings: optional (vocab_size, D) float table that gives the tokens meaning
                (a codebook for visual tokens, a frozen word-embedding table for text)
    vocab:    optional token strings, ``vocab[i]`` is the surface form of id ``i``
    source:   where the tokens came from (file name, tokenizer name), recorded in results
    """

    ids: torch.Tensor
    offsets: torch.Tensor
    vocab_size: int
    embeddings: torch.Tensor | None = None
    vocab: tuple[str, ...] | None = None
    source: str = ""

    @property
    def num_entities(self) -> int:
        return int(self.offsets.numel() - 1)

    def counts(self) -> torch.Tensor:
        """(num_entities,) number of tokens per entity (0 = modality missing)."""
        return self.offsets[1:] - self.offsets[:-1]

    def of(self, entity: int) -> torch.Tensor:
        return self.ids[self.offsets[entity]: self.offsets[entity + 1]]

    @staticmethod
    def from_lists(lists: list[list[int]], vocab_size: int, **kw: Any) -> TokenBags:
        lengths = torch.tensor([len(x) for x in lists], dtype=torch.long)
        offsets = torch.zeros(len(lists) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        flat = [t for x in lists for t in x]
        ids = torch.tensor(flat, dtype=torch.long) if flat else torch.zeros(0, dtype=torch.long)
        return TokenBags(ids=ids, offsets=offsets, vocab_size=vocab_size, **kw)


@dataclass(frozen=True)
class FeatureSet:
    """Pre-extracted per-entity features.

    values:  (num_entities, D) or (num_entities, P, D) float (P = patches / images per entity);
             rows of absent entities are zeros
    present: (num_entities,) bool, False where the entity lacks this modality
    source:  encoder or file the features came from
    """

    values: torch.Tensor
    present: torch.Tensor
    source: str = ""

    def pooled(self) -> torch.Tensor:
        """(num_entities, D): mean over patches when values are 3-D."""
        return self.values.mean(dim=1) if self.values.dim() == 3 else self.values


@dataclass(frozen=True)
class EntityModalities:
    """Every modality is optional, per entity and per dataset (structure-only KGs have none).

    texts:   per-entity description or None
    tokens:  modality name ("text", "image") -> TokenBags
    features: modality name -> FeatureSet
    image_paths: per-entity list of image files (possibly empty)
    """

    num_entities: int
    texts: tuple[str | None, ...] | None = None
    tokens: dict[str, TokenBags] = field(default_factory=dict)
    features: dict[str, FeatureSet] = field(default_factory=dict)
    image_paths: tuple[tuple[str, ...], ...] | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.texts or self.tokens or self.features or self.image_paths)

    def describe(self) -> dict[str, Any]:
        """A small JSON-able summary for result records."""
        out: dict[str, Any] = {}
        for name, bags in self.tokens.items():
            out[f"tokens.{name}"] = {"vocab_size": bags.vocab_size, "source": bags.source,
                                     "coverage": float((bags.counts() > 0).float().mean())}
        for name, fs in self.features.items():
            out[f"features.{name}"] = {"shape": list(fs.values.shape), "source": fs.source,
                                       "coverage": float(fs.present.float().mean())}
        if self.texts is not None:
            out["texts"] = {"coverage": sum(t is not None for t in self.texts) / max(1, self.num_entities)}
        return out


# --------------------------------------------------------------------------- base adapter
@dataclass
class TrainSchedule:
    """Training-loop knobs every trainable adapter's config carries; the harness reads them.

    epochs: maximum epochs (0 = the model is used as it is, no training)
    eval_every: evaluate on validation every this many epochs (and after the last one)
    patience: stop after this many validation checks without improvement (0 = never stop early)
    eval_batch_size: queries scored per batch at evaluation
    """

    epochs: int = 100
    eval_every: int = 10
    patience: int = 0
    eval_batch_size: int = 512


class ModelAdapter(ABC):
    """Common base of all adapters.

    Subclasses set ``Config`` (a dataclass of hyperparameters with defaults) and may set ``presets``
    (task name -> config overrides, each preset commented with its source). The registry sets ``name``.

    The harness sets, before ``setup``:
      device:   where to compute (``--device``); put modules and batches there. Inputs the harness passes
                (query batches, node ids) arrive on it; returned scores may stay on it.
      progress: ``mmbench.progress.Progress`` for bars with an ETA (encoding, training steps); quiet under
                ``--quiet`` and in sweeps
    An adapter may set ``compute_dtype`` (the precision it runs in, default fp32) and fill ``backbones``
    (role -> ``BackboneIdentity.as_dict()`` of each pretrained model it loaded); both go into the record.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = TrainSchedule
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any | None = None):
        from mmbench.progress import Progress

        self.config = config if config is not None else self.Config()
        self.module: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.progress = Progress(quiet=True)
        self.compute_dtype = torch.float32
        self.backbones: dict[str, dict[str, Any]] = {}

    # checkpointing for validation-based selection
    def state_dict(self) -> dict[str, Any]:
        if self.module is None:
            return {}
        return copy.deepcopy(self.module.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.module is not None:
            self.module.load_state_dict(state)

    def num_parameters(self) -> int:
        """Trainable plus frozen parameters of ``self.module`` (0 if the adapter has none)."""
        if self.module is None:
            return 0
        return sum(p.numel() for p in self.module.parameters())

    def begin_scoring(self) -> None:
        if self.module is not None:
            self.module.eval()

    def end_scoring(self) -> None:
        if self.module is not None:
            self.module.train()

    @abstractmethod
    def train_epoch(self, epoch: int) -> float:
        """One pass over the training data (epochs count from 1); returns the mean training loss."""
        ...

    def train_epochs(self, first: int, count: int) -> list[float]:
        """Epochs ``first .. first + count - 1``; override when a library trains several at once cheaper."""
        return [self.train_epoch(e) for e in range(first, first + count)]

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def describe(self) -> dict[str, Any]:
        """Facts about the built model worth keeping in the result (e.g. where its tokens came from)."""
        return {}


# --------------------------------------------------------------------------- KGC family
@dataclass(frozen=True)
class KGTrainingData:
    """Everything a KGC adapter receives. The test split is deliberately absent.

    train: (N_train, 3) long, columns (head, relation, tail)
    valid: (N_valid, 3) long, for model selection (the harness scores it; adapters may also look)
    """

    task: str
    num_entities: int
    num_relations: int
    train: torch.Tensor
    valid: torch.Tensor
    modalities: EntityModalities
    entity_names: tuple[str, ...] | None = None
    relation_names: tuple[str, ...] | None = None


class KGCModel(ModelAdapter):
    """Protocol for multimodal knowledge-graph completion.

    The harness calls ``setup`` once, then ``train_epoch`` for epochs 1..config.epochs, scoring
    validation in between and keeping the best ``state_dict``; finally it restores that state and
    asks for test scores. Scores are higher-is-better; filtering and ranking happen in the harness.
    """

    family: ClassVar[str] = "kgc"

    @abstractmethod
    def setup(self, data: KGTrainingData, seed: int) -> None:
        """Build the model for this graph; all randomness must derive from ``seed``."""
        ...


    @abstractmethod
    def score_tails(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """heads, relations: (B,) long -> scores (B, num_entities) float for (h, r, ?)."""
        ...

    @abstractmethod
    def score_heads(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        """relations, tails: (B,) long -> scores (B, num_entities) float for (?, r, t)."""
        ...


# --------------------------------------------------------------------------- multimodal-graph families
@dataclass(frozen=True)
class SampleNode:
    """One node of an assembled neighbourhood.

    text:  the node's text (for the target node of a generation sample: its input, never the answer)
    image: path of the node's image file, or None
    kind:  dataset-specific role ("section", "page", "image", "product", ...)
    hop:   hop distance from the target node (0 for the target; -1 = not reachable inside the sample)
    node:  the node's id in its graph (``MultimodalGraph`` row), so per-node tables (precomputed features)
           can be looked up; -1 when the sample was not cut from a graph
    """

    text: str | None
    image: str | None
    kind: str = "node"
    hop: int = 0
    node: int = -1


@dataclass(frozen=True)
class GraphSample:
    """A target node and its multimodal neighbourhood, assembled by the harness.

    id:         stable sample id (the target node's id in its dataset)
    nodes:      nodes[0] is the target; the rest are neighbours in a dataset-defined order
    edge_index: (2, M) long over local node indices (both directions for undirected edges)
    edge_type:  (M,) long indices into ``edge_type_names``
    """

    id: str
    nodes: tuple[SampleNode, ...]
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    edge_type_names: tuple[str, ...] = ("text-text", "image-image", "text-image")


@dataclass(frozen=True)
class GenerationTrainingData:
    """What a generation adapter receives: training samples with targets; validation and test samples
    only as inputs (the harness holds every valid/test target and scores the generated text)."""

    task: str
    train: tuple[GraphSample, ...]
    train_targets: tuple[str, ...]
    valid: tuple[GraphSample, ...]
    test: tuple[GraphSample, ...]
    max_new_tokens: int = 32


class GenerationModel(ModelAdapter):
    """Protocol for multimodal-graph generation (e.g. WikiWeb2M section summarization).

    ``generate`` must decode freely (greedy by default, beam search when ``num_beams > 1``); the
    harness never accepts teacher-forced outputs as predictions.
    """

    family: ClassVar[str] = "generation"

    @abstractmethod
    def setup(self, data: GenerationTrainingData, seed: int) -> None:
        ...

    @abstractmethod
    def generate(self, samples: list[GraphSample], max_new_tokens: int, num_beams: int = 1) -> list[str]:
        """One output string per sample, in order."""
        ...


@dataclass(frozen=True)
class ClassificationTrainingData:
    """What a node-classification adapter receives: the whole graph, labels of training nodes only.

    graph:        the multimodal graph with every valid/test label removed (-1)
    train_nodes:  (n,) long node ids with labels in ``graph.labels``
    valid_nodes, test_nodes: (n,) long node ids to predict (labels held by the harness)
    class_names:  all classes; ``train_classes`` those seen in training (zero-shot splits hold out
                  the others), ``candidate_classes`` those a prediction may choose from
    hops, max_nodes: the card's neighbourhood limits (``protocol.hops``, ``protocol.max_nodes``)
    assemble:     node id -> ``GraphSample`` of its ``hops``-hop neighbourhood (nearest first, at most
                  ``max_nodes`` nodes), cut from ``graph`` (so it holds no valid/test label): the same input
                  contract generation adapters get
    """

    task: str
    graph: Any
    train_nodes: torch.Tensor
    valid_nodes: torch.Tensor
    test_nodes: torch.Tensor
    class_names: tuple[str, ...]
    train_classes: tuple[int, ...]
    candidate_classes: tuple[int, ...]
    hops: int = 2
    max_nodes: int = 16
    assemble: Callable[[int], GraphSample] | None = None

    def refuse_unseen_classes(self, model: str, why: str) -> None:
        """For models that can only score training classes: a ConfigError naming the unseen candidate classes
        (a zero-shot split), ``why`` the model cannot score them, and models that can; nothing otherwise."""
        unseen = sorted(set(self.candidate_classes) - set(self.train_classes))
        if unseen:
            names = ", ".join(self.class_names[k] for k in unseen)
            from mmbench.errors import ConfigError

            raise ConfigError(
                f"{model}: candidate classes {unseen} ({names}) never occur in training (a zero-shot split of task "
                f"{self.task}); {why}. Use a model that reads the class names, e.g. --model lm-cls --set "
                f"mode=likelihood (or gcn/mlp, whose zero_shot=label-similarity scores class-name embeddings)")

    def samples(self, nodes: torch.Tensor | Sequence[int]) -> list[GraphSample]:
        """``assemble`` for each node (in order)."""
        if self.assemble is None:
            raise ValueError(f"task {self.task}: this view has no sample assembler")
        ids = nodes.tolist() if isinstance(nodes, torch.Tensor) else list(nodes)
        return [self.assemble(int(v)) for v in ids]


class ClassificationModel(ModelAdapter):
    """Protocol for multimodal-graph node classification (supervised or zero-shot)."""

    family: ClassVar[str] = "classification"

    @abstractmethod
    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        ...

    @abstractmethod
    def predict(self, nodes: torch.Tensor) -> torch.Tensor:
        """nodes: (B,) long -> scores (B, num_classes), higher = more likely; the harness takes the
        argmax over ``candidate_classes``."""
        ...
