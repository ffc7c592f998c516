"""The skeleton of an LM adapter that reads an assembled sub-graph as one prompt of text and soft tokens, for
both graph families. Graph4MM (``graph4mm.py``) and VW-LMM (``vwlmm.py``) subclass it and supply what is theirs:
the frozen-encoder tables (``make_encodings``), their trained modules (``make_net``), the soft tokens of a batch
of samples (``soft_tokens``) and, if any, an extra loss term (``loss``).

Shared: the LM (``lm_policies.build_lm``: device, dtype, what trains), the prompt layout (``graph_prompts``:
interleaved, or soft tokens as a prefix), batches, the target-token loss, one training epoch with a progress bar,
selection state (trained parameters only), free decoding, and classification by class-name likelihood
(``head=likelihood``: scored by each candidate's mean token log-likelihood of " {class name}", so unseen
classes can be scored; trained with the LM loss on the true name, or with ``cls_loss=candidates`` by
cross-entropy over the scores of the training classes' names, which teaches the soft tokens to tell the
names apart in context rather than to raise the prior of the seen names, or ``cls_loss=centred``: the same
with each name's scores centred over the batch, so that no shift of a name's prior for all inputs is learnt;
``calibration`` subtracts each name's mean score over reference prompts at prediction, ``lm_decode`` module
docstring) or a linear head over the LM's mean-pooled final hidden states (``head=linear``, supervised splits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.api import (
    ClassificationModel,
    ClassificationTrainingData,
    GenerationModel,
    GenerationTrainingData,
    GraphSample,
    SampleNode,
    TrainSchedule,
)
from mmbench.devices import autocast
from mmbench.errors import ConfigError
from mmbench.models import lm_decode, lm_utils
from mmbench.models.graph_prompts import LAYOUTS, interleaved_prompt, prefix_prompt
from mmbench.models.lm_forward import hidden_at, unwrap
from mmbench.models.lm_policies import build_lm
from mmbench.models.node_encodings import NodeEncodings

CLASS_SUFFIX = "\nCategory:"


CLS_LOSSES = ("lm", "candidates", "centred")


@dataclass
class GraphLMConfig(TrainSchedule):
    """The keys every graph-LM adapter has; subclasses add theirs."""

    epochs: int = 3
    eval_every: int = 1
    patience: int = 2
    eval_batch_size: int = 8
    lm: str = "smollm2"               # backbones.causal_lm name, folder or cached hub name (e.g. facebook/opt-125m)
    trainable: str = "last:4"         # the LM: none | prefix:n=.. | lora:.. | last:N | all
    dtype: str = "auto"               # fp32 | bf16 | fp16 | auto (fp32 on CPU, bf16 on a GPU that supports it)
    placement: str = "interleaved"    # soft tokens after their node's text | prefix (all before the text)
    prompt_layout: str = "context"    # graph_prompts.LAYOUTS: context (a line per node, every hop) | related (the
                                      # lm-cls baseline's "Node: ..\nRelated: .. | ..", 1-hop neighbours)
    lr: float = 1e-4                  # the adapter's own modules
    lm_lr: float = 5e-5               # LM parameters (when trainable is not none)
    weight_decay: float = 0.01
    batch_size: int = 8
    grad_clip: float = 1.0
    max_prompt_tokens: int = 384      # text and soft tokens of the whole prompt (graph_prompts budget rule)
    max_target_tokens: int = 64
    head: str = "likelihood"          # classification: likelihood (class names, zero-shot capable) | linear
    label_template: str = " {name}"   # the continuation scored for each class (likelihood head)
    cls_loss: str = "lm"              # likelihood head's training loss: lm (LM loss on the true class name) |
                                      # candidates (softmax over the training classes' name scores, module doc)
                                      # | centred (candidates, each name's score centred over the batch)
    calibration: str = "none"         # likelihood head at prediction: none | content-free | domain (lm_decode)
    calibration_nodes: int = 256      # domain: training nodes whose prompts (with their soft tokens) are the
                                      # reference

    # keys added after records existed: at these values a run key leaves them out (runner.run_key_config)
    keys_added_later: ClassVar[dict[str, Any]] = {"cls_loss": "lm", "calibration": "none",
                                                  "calibration_nodes": 256, "prompt_layout": "context"}


def own_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Trainable parameters of ``module`` outside its LM (attribute ``lm``)."""
    return [p for n, p in module.named_parameters() if not n.startswith("lm.") and p.requires_grad]


class GraphLMCore(lm_utils.TrainableLMState):
    """What both families share (see the module docstring). Subclasses implement ``make_encodings``,
    ``make_net`` and ``soft_tokens``; ``self.module`` is the net, with the LM as ``self.module.lm``."""

    config: GraphLMConfig
    device: torch.device
    betas: tuple[float, float] = (0.9, 0.999)

    # ------------------------------------------------------------------ to implement
    def make_encodings(self) -> NodeEncodings:
        raise NotImplementedError

    def make_net(self, lm: nn.Module, width: int) -> nn.Module:
        raise NotImplementedError

    def soft_tokens(self, samples: list[GraphSample]) -> list[dict[int, torch.Tensor]]:
        """Per sample: sample position -> (n, LM width) soft tokens placed after that node's text."""
        raise NotImplementedError

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of a batch (default: cross-entropy on the target tokens)."""
        return lm_utils.causal_lm_loss(self.module.lm, batch)

    # ------------------------------------------------------------------ shared
    def build(self, samples: list[GraphSample], seed: int, suffix: str) -> None:
        c = self.config
        if c.placement not in ("interleaved", "prefix"):
            raise ConfigError(f"{self.name}: placement={c.placement!r}: expected interleaved or prefix")
        if c.prompt_layout not in LAYOUTS:
            raise ConfigError(f"{self.name}: prompt_layout={c.prompt_layout!r}: expected {' or '.join(LAYOUTS)}")
        if c.head not in ("likelihood", "linear"):
            raise ConfigError(f"{self.name}: head={c.head!r}: expected likelihood or linear")
        if c.cls_loss not in CLS_LOSSES:
            raise ConfigError(f"{self.name}: cls_loss={c.cls_loss!r}: expected {' or '.join(CLS_LOSSES)}")
        lm_decode.check_calibration(self.name, c.calibration)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.suffix = suffix
        lm = build_lm(c.lm, c.trainable, self.device, c.dtype, seed)
        self.tokenizer, self.lm_params = lm.tokenizer, lm.params
        self.compute_dtype, self.backbones["lm"] = lm.dtype, lm.identity
        self.enc = self.make_encodings()
        self.enc.add(samples)
        torch.manual_seed(seed)  # a first (uncached) encoder load may have drawn random numbers
        width = unwrap(lm.model).get_input_embeddings().weight.shape[1]
        self.module = self.make_net(lm.model, width).to(self.device)
        self.refresh_optimizer()

    def refresh_optimizer(self) -> None:
        c = self.config
        self.own_params = own_parameters(self.module)
        self.params = self.lm_params + self.own_params
        self.optimizer = lm_utils.make_optimizer([(self.own_params, c.lr), (self.lm_params, c.lm_lr)],
                                                 c.weight_decay, betas=self.betas)

    def prompts(self, samples: list[GraphSample]) -> list[list[Any]]:
        """One part list per sample (text ids and soft tokens), laid out by ``placement``."""
        c = self.config
        layout = LAYOUTS[c.prompt_layout]
        out = []
        for s, soft in zip(samples, self.soft_tokens(samples), strict=True):
            if c.placement == "prefix":
                parts, _ = prefix_prompt(self.tokenizer, s, [soft[j] for j in sorted(soft)], c.max_prompt_tokens,
                                         self.suffix, layout=layout)
            else:
                parts, _ = interleaved_prompt(self.tokenizer, s, soft, c.max_prompt_tokens, self.suffix,
                                              layout=layout)
            out.append(parts)
        return out

    def batch(self, samples: list[GraphSample], targets: list[list[int]] | None, training: bool) -> dict[str, Any]:
        with autocast(self.device, self.compute_dtype):
            parts = self.prompts(samples)
        b = lm_utils.collate(parts, targets, pad_token_id=lm_utils.pad_id(self.tokenizer),
                             padding_side="right" if training else "left",
                             embed=unwrap(self.module.lm).get_input_embeddings(), device=self.device)
        return self.extend_batch(b, parts)

    def extend_batch(self, batch: dict[str, Any], parts: list[list[Any]]) -> dict[str, Any]:
        """Add what ``loss`` needs beyond the LM inputs (default: nothing)."""
        return batch

    def shuffled_epoch(self, label: str, n: int, batch_loss: Callable[[list[int], int], torch.Tensor],
                       optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> float:
        """One pass over items 0..n-1 in a seeded random order, ``batch_size`` at a time: ``batch_loss(idx,
        first)`` (the batch's items and the place of its first one in this epoch's order) -> that batch's mean
        loss (a scalar), one optimiser step each; returns the mean loss per item."""
        c = self.config
        self.module.train()
        perm = torch.randperm(n, generator=self.generator).tolist()
        total = 0.0
        bar = self.progress.bar(-(-n // c.batch_size), label, unit="step")
        for s in range(0, n, c.batch_size):
            idx = perm[s:s + c.batch_size]
            total += lm_utils.optimizer_step(batch_loss(idx, s), optimizer, params, c.grad_clip) * len(idx)
            bar.update()
        bar.close()
        return total / max(n, 1)

    def lm_epoch(self, epoch: int, samples: list[GraphSample], targets: list[list[int]]) -> float:
        """One epoch of ``loss`` over ``samples`` with their target ids."""
        if not samples or self.optimizer is None:
            return 0.0
        def batch_loss(idx: list[int], _first: int) -> torch.Tensor:
            return self.loss(self.batch([samples[i] for i in idx], [targets[i] for i in idx], training=True))

        return self.shuffled_epoch(f"epoch {epoch}", len(samples), batch_loss, self.optimizer, self.params)

    def describe(self) -> dict[str, Any]:
        if self.module is None:
            return {}
        c = self.config
        return {"lm": c.lm, "trainable": c.trainable, "trainable_parameters": sum(p.numel() for p in self.params),
                "own_parameters": sum(p.numel() for p in self.own_params), "encoded": self.enc.counts(),
                "placement": c.placement, "loss": "cross-entropy on target tokens only"}


class GraphLMGenerator(GraphLMCore, GenerationModel):
    """Generation: the target follows the prompt's "Summary:"; free decoding."""

    def setup(self, data: GenerationTrainingData, seed: int) -> None:
        self.build(list(data.train) + list(data.valid) + list(data.test), seed, lm_utils.PROMPT_SUFFIX)
        c = self.config
        self.train_samples = list(data.train)
        self.train_targets = [lm_utils.target_ids(self.tokenizer, t, c.max_target_tokens) for t in data.train_targets]

    def train_epoch(self, epoch: int) -> float:
        return self.lm_epoch(epoch, self.train_samples, self.train_targets)

    @torch.no_grad()
    def generate(self, samples: list[GraphSample], max_new_tokens: int, num_beams: int = 1) -> list[str]:
        if not samples:
            return []
        b = self.batch(list(samples), None, training=False)
        return lm_decode.generate_texts(self.module.lm, self.tokenizer, b, max_new_tokens, num_beams)


class GraphLMClassifier(GraphLMCore, ClassificationModel):
    """Classification of a node from its assembled sub-graph (module docstring: the two heads)."""

    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        c = self.config
        unseen = sorted(set(data.candidate_classes) - set(data.train_classes))
        if c.head == "linear" and unseen:
            raise ConfigError(f"{self.name}: candidate classes {unseen} never occur in training (a zero-shot split); "
                              f"a linear head cannot score them. Use --set head=likelihood")
        if data.assemble is None:
            raise ConfigError(f"{self.name}: task {data.task} gives no assembled samples")
        self.view = data
        self._samples: dict[int, GraphSample] = {}
        nodes = torch.cat([data.train_nodes, data.valid_nodes, data.test_nodes]).tolist()
        self.build(self.samples_of(nodes), seed, CLASS_SUFFIX)
        self.num_classes = len(data.class_names)
        self.candidates = list(data.candidate_classes)
        labels = data.graph.labels[data.train_nodes]
        seen = set(data.train_classes)
        keep = [i for i, y in enumerate(labels.tolist()) if y >= 0 and y in seen]
        self.train_nodes = [int(data.train_nodes[i]) for i in keep]
        self.train_labels = [int(labels[i]) for i in keep]
        self.label_ids = [lm_utils.token_ids(self.tokenizer, c.label_template.format(name=n))
                          for n in data.class_names]
        if any(not x for x in self.label_ids):
            raise ConfigError(f"{self.name}: a class name has no tokens under label_template {c.label_template!r}")
        self.cls_head: nn.Linear | None = None
        if c.head == "linear":
            width = unwrap(self.module.lm).get_input_embeddings().weight.shape[1]
            self.train_classes = sorted(seen)
            self.module.cls_head = nn.Linear(width, len(self.train_classes)).to(self.device)
            self.cls_head = self.module.cls_head
            self.refresh_optimizer()

    def samples_of(self, nodes: list[int]) -> list[GraphSample]:
        """Assembled samples of graph nodes (each assembled once)."""
        for v in nodes:
            if v not in self._samples:
                self._samples[v] = self.view.assemble(v)
        return [self._samples[v] for v in nodes]

    def pooled(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean of the LM's final hidden states over each prompt's real positions: (B, H)."""
        rows, cols = b["attention_mask"].nonzero(as_tuple=True)
        h = hidden_at(self.module.lm, b, rows, cols).float()
        out = h.new_zeros(b["attention_mask"].shape[0], h.shape[-1]).index_add_(0, rows, h)
        return out / b["attention_mask"].sum(1, keepdim=True).clamp_min(1).float()

    def train_epoch(self, epoch: int) -> float:
        c = self.config
        if self.cls_head is None and c.cls_loss == "lm":
            targets = [self.label_ids[y] for y in self.train_labels]
            return self.lm_epoch(epoch, self.samples_of(self.train_nodes), targets)
        classes = self.train_classes if self.cls_head is not None else sorted(set(self.train_labels))
        pos = {k: i for i, k in enumerate(classes)}
        if self.cls_head is None:
            lab = lm_decode.label_tensors([self.label_ids[k] for k in classes], lm_utils.pad_id(self.tokenizer),
                                          self.device)

        def batch_loss(idx: list[int], _first: int) -> torch.Tensor:
            b = self.batch(self.samples_of([self.train_nodes[i] for i in idx]), None, training=False)
            # (B, classes): linear head over the pooled states, or the training classes' name scores
            logits = self.cls_head(self.pooled(b)) if self.cls_head is not None else \
                lm_decode.label_scores(self.module.lm, b, *lab)
            if self.cls_head is None and c.cls_loss == "centred":
                # each name's score minus its mean over the batch (with gradient): a shift of one name's
                # score for every input cancels, so training cannot move the seen names' priors
                logits = logits - logits.mean(0, keepdim=True)
            y = torch.tensor([pos[self.train_labels[i]] for i in idx], device=self.device)
            return F.cross_entropy(logits, y)

        return self.shuffled_epoch(f"epoch {epoch}", len(self.train_nodes), batch_loss, self.optimizer, self.params)

    @torch.no_grad()
    def predict(self, nodes: torch.Tensor) -> torch.Tensor:
        samples = self.samples_of([int(v) for v in nodes.tolist()])
        scores = torch.full((len(samples), self.num_classes), -1e9, device=self.device)
        if self.cls_head is not None:
            b = self.batch(samples, None, training=False)
            scores[:, self.train_classes] = self.cls_head(self.pooled(b)).float()
            return scores
        ll = self._name_scores(samples)
        if self.config.calibration != "none":
            ll = lm_decode.calibrated(ll, self._reference_scores())
        scores[:, self.candidates] = ll.to(self.device)
        return scores

    def begin_scoring(self) -> None:
        super().begin_scoring()
        self._reference = None   # the calibration reference of this scoring pass (the model does not change)

    def end_scoring(self) -> None:
        self._reference = None
        super().end_scoring()

    def _reference_scores(self) -> torch.Tensor:
        """(R, candidates) name scores after the calibration reference prompts, once per scoring pass."""
        if getattr(self, "_reference", None) is None:
            c = self.config
            ref = lm_decode.reference_inputs(c.calibration, self.train_nodes, c.calibration_nodes,
                                             lambda texts: [content_free_sample(x) for x in texts], self.samples_of)
            self._reference = self._name_scores(ref)
        return self._reference

    def _name_scores(self, samples: list[GraphSample]) -> torch.Tensor:
        """(len(samples), candidates) mean token log-likelihood of each candidate name after each prompt."""
        with autocast(self.device, self.compute_dtype):
            parts = self.prompts(samples)
        return lm_decode.label_log_likelihoods(self.module.lm, parts, [self.label_ids[k] for k in self.candidates],
                                               pad_token_id=lm_utils.pad_id(self.tokenizer),
                                               batch_size=self.config.eval_batch_size)


def content_free_sample(text: str) -> GraphSample:
    """A one-node sample whose only content is ``text`` (no image, no neighbours): a content-free input."""
    return GraphSample(id="content-free", nodes=(SampleNode(text=text or None, image=None),),
                       edge_index=torch.zeros(2, 0, dtype=torch.long), edge_type=torch.zeros(0, dtype=torch.long))
