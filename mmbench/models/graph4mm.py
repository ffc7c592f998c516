"""Graph4MM (Ning et al., "Graph4MM: Weaving Multimodal Learning with Structural Information", ICML 2025,
arXiv 2510.16990; public code github.com/YennNing/Graph4MM), one model for generation and classification.

For one assembled sample (``GraphSample``; see ``mmbench.data.subgraph.modality_views`` for how a sample becomes
a text graph and an image graph):

  node encodings   text nodes -> frozen text encoder (masked mean pooling, padding excluded) -> Linear(-> d);
                   image nodes -> frozen vision encoder (pooled output) -> Linear(-> d); both read from the
                   shared encoder cache (``NodeEncodings``): no epoch re-encodes anything
  structure        per modality, Hop-Diffused Attention over that modality's graph (attention restricted to its
                   edges, row-normalised, ``h + sum_k theta_k A^k h``; ``graph4mm_layers``), or the hop-aware
                   variant (a learned hop-distance embedding added instead), or nothing (ablations)
  MM-QFormer       ``queries_per_image`` learned queries per image slot (``max_image_slots`` slots, nearest images
                   first) self-attend jointly with the text nodes, cross-attend to the image nodes, FFN;
                   ``qformer_blocks`` blocks; output -> Linear(d -> LM width): slot s's group of tokens
  LM input         the sample as one interleaved prompt (``graph_prompts``): node texts in sample order, each
                   image slot's tokens right after its node's text (the public code's image positions), or all
                   slot tokens as a prefix (``placement=prefix``)
  LM               frozen by default (``trainable=none``, the paper's OPT setting); ``prefix:n=..``/``lora:..``
                   (peft), ``last:N``, ``all``. Loss on target tokens only; free decoding at test.
  classification   the same encoder over the node's assembled sub-graph; ``head=likelihood``: trained with the LM
                   loss on " {class name}", scored by each candidate class name's mean token log-likelihood
                   (works for unseen classes); ``head=linear``: a linear head over the LM's mean-pooled final
                   hidden states (supervised splits only)

Departures from the public code (README, Graph4MM section, lists them with reasons): per-sample attention (the
public code averages attention over the batch), renormalised diffusion weights and the paper's residual, graph
edges built from the same nodes that are encoded (the public code's index shift), masked mean pooling, loss on
target tokens only, free decoding at validation and test, offline encoders (MiniLM / EfficientNet-Lite0) and LM
(SmolLM2-135M) by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.api import (
    ClassificationModel,
    ClassificationTrainingData,
    GenerationModel,
    GenerationTrainingData,
    GraphSample,
    TrainSchedule,
)
from mmbench.backbones import text_encoder_identity, vision_encoder_identity
from mmbench.data.subgraph import modality_views
from mmbench.devices import autocast
from mmbench.errors import ConfigError
from mmbench.models import lm_decode, lm_utils
from mmbench.models.graph4mm_layers import HopAwareEncoding, HopDiffusedAttention, MMQFormer
from mmbench.models.graph_prompts import hop_priority, interleaved_prompt, prefix_prompt
from mmbench.models.lm_forward import hidden_at, unwrap
from mmbench.models.lm_policies import build_lm
from mmbench.models.node_encodings import NodeEncodings
from mmbench.registry import register_model

VARIANTS = ("hop-diffused", "hop-aware")
CLASS_SUFFIX = "\nCategory:"


@dataclass
class Graph4MMConfig(TrainSchedule):
    """Defaults: the paper's model shape on mmbench's offline backbones; per-task presets below."""

    epochs: int = 3
    eval_every: int = 1
    patience: int = 2
    eval_batch_size: int = 8
    lm: str = "smollm2"               # backbones.causal_lm name, folder or cached hub name (e.g. facebook/opt-125m)
    trainable: str = "none"           # the LM: none (paper, OPT) | prefix:n=.. | lora:.. | last:N | all
    dtype: str = "auto"
    text_encoder: str = "minilm"      # any AutoModel text encoder by name or folder
    text_max_length: int = 256        # neighbour-text tokens seen by the text encoder (public code: 512)
    vision_encoder: str = "efficientnet-lite0"   # or a CLIP vision tower (pooled), e.g. openai/clip-vit-base-patch16
    width: int = 0                    # d of diffusion and MM-QFormer (0: the LM's hidden size, as the public code)
    variant: str = "hop-diffused"     # hop-diffused | hop-aware (both modalities unless overridden below)
    text_variant: str = ""            # per modality (paper Table 3); "" = variant
    image_variant: str = ""
    alpha: float = 0.1                # theta_k = alpha (1 - alpha)^k (public code 0.1)
    diffusion_steps: int = 2          # K = highest power of A (paper: 2)
    diffusion_heads: int = 4
    diffusion_layers: int = 1
    normalise_theta: bool = True      # truncated theta sums to 1 (public code: no, sum 0.3439)
    max_hop: int = 4                  # hop-aware embedding rows 0..max_hop (+ one for unreachable)
    queries_per_image: int = 4        # paper / public code: 4 tokens per image
    max_image_slots: int = 5          # public code: 5 image slots, the target's own first
    max_text_nodes: int = 12          # public code: 12 neighbour texts
    qformer_blocks: int = 1
    qformer_heads: int = 4
    qformer_order: str = "paper"      # paper (shared self-attention, then cross-attention) | public
    placement: str = "interleaved"    # interleaved (tokens at each image's position) | prefix
    text_structure: bool = True       # False: text nodes attend to nothing but themselves (ablation)
    image_structure: bool = True
    use_images: bool = True           # False: no image nodes, no MM-QFormer tokens (ablation)
    use_qformer: bool = True          # False: each image slot's token group = its (structured) image node repeated
    lr: float = 1e-4                  # Graph4MM modules (paper and public code: 1e-4)
    lm_lr: float = 5e-5               # LM parameters (when trainable is not none)
    weight_decay: float = 0.01
    batch_size: int = 8
    grad_clip: float = 1.0
    max_prompt_tokens: int = 384      # text and soft tokens of the whole prompt
    max_target_tokens: int = 64
    head: str = "likelihood"          # classification: likelihood (class names, zero-shot capable) | linear
    label_template: str = " {name}"   # the continuation scored for each class (likelihood head)


def _check(c: Graph4MMConfig) -> None:
    for key in ("variant", "text_variant", "image_variant"):
        v = getattr(c, key)
        if (v or key != "variant") and v not in VARIANTS + ("",):
            raise ConfigError(f"graph4mm: {key}={v!r}: expected {' or '.join(VARIANTS)}")
    if c.variant not in VARIANTS:
        raise ConfigError(f"graph4mm: variant={c.variant!r}: expected {' or '.join(VARIANTS)}")
    if c.qformer_order not in ("paper", "public"):
        raise ConfigError(f"graph4mm: qformer_order={c.qformer_order!r}: expected paper or public")
    if c.placement not in ("interleaved", "prefix"):
        raise ConfigError(f"graph4mm: placement={c.placement!r}: expected interleaved or prefix")
    if c.head not in ("likelihood", "linear"):
        raise ConfigError(f"graph4mm: head={c.head!r}: expected likelihood or linear")
    for key in ("queries_per_image", "max_image_slots", "max_text_nodes", "diffusion_heads", "qformer_heads"):
        if getattr(c, key) < 1:
            raise ConfigError(f"graph4mm: {key} must be at least 1, got {getattr(c, key)}")


class ModalityStructure(nn.Module):
    """One modality's structure encoder: hop-diffused attention, hop-aware embedding, or none.

    forward(h (N, d), edge_index (2, M) over packed nodes, hops (N,) long) -> (N, d)
    """

    def __init__(self, variant: str, use_structure: bool, c: Graph4MMConfig, dim: int):
        super().__init__()
        self.variant, self.use_structure = variant, use_structure
        self.diffusion = HopDiffusedAttention(dim, c.diffusion_heads, c.alpha, c.diffusion_steps,
                                              c.diffusion_layers, normalise_theta=c.normalise_theta) \
            if variant == "hop-diffused" else None
        self.hops = HopAwareEncoding(dim, c.max_hop) if variant == "hop-aware" else None

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, hops: torch.Tensor) -> torch.Tensor:
        if self.diffusion is not None:
            # without structure every node attends to nothing but itself: no edges, only the theta_0 term
            edges = edge_index if self.use_structure else edge_index[:, :0]
            return self.diffusion(h, edges)
        if self.use_structure:
            return self.hops(h, hops)
        return h


class Graph4MMNet(nn.Module):
    """The trained Graph4MM modules around a (frozen or peft-tuned) LM."""

    def __init__(self, lm: nn.Module, c: Graph4MMConfig, text_dim: int, image_dim: int, lm_width: int):
        super().__init__()
        d = c.width or lm_width
        self.lm, self.d, self.q = lm, d, c.queries_per_image
        self.text_proj = nn.Linear(text_dim, d) if text_dim else None
        self.image_proj = nn.Linear(image_dim, d) if image_dim else None
        self.text_struct = ModalityStructure(c.text_variant or c.variant, c.text_structure, c, d)
        self.image_struct = ModalityStructure(c.image_variant or c.variant, c.image_structure, c, d)
        self.qformer = MMQFormer(d, c.max_image_slots * c.queries_per_image, c.qformer_heads, 4 * d,
                                 c.qformer_blocks, c.qformer_order) if c.use_qformer else None
        self.out_proj = nn.Linear(d, lm_width)

    def graph4mm_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("lm.") and p.requires_grad]


@dataclass
class PackedModality:
    """One modality of a batch, packed: rows (N,) into the encoder table, batch (N,), local position (N,) of each
    node in its sample's modality list, hops (N,), edges (2, M) over packed ids."""

    rows: torch.Tensor
    batch: torch.Tensor
    local: torch.Tensor
    hops: torch.Tensor
    edges: torch.Tensor


def _pack(per_sample: list[tuple[list[int], list[int], torch.Tensor]], device: torch.device) -> PackedModality:
    """per sample (table rows, hops, local edges (2, m)) -> PackedModality."""
    rows, batch, local, hops, edges = [], [], [], [], []
    offset = 0
    for b, (r, h, e) in enumerate(per_sample):
        rows += r
        hops += h
        batch += [b] * len(r)
        local += list(range(len(r)))
        if e.numel():
            edges.append(e + offset)
        offset += len(r)
    ei = torch.cat(edges, 1) if edges else torch.zeros(2, 0, dtype=torch.long)

    def t(x: list[int]) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.long, device=device)

    return PackedModality(t(rows), t(batch), t(local), t(hops), ei.to(device))


def _keep_edges(edges: torch.Tensor, keep: list[int]) -> torch.Tensor:
    """edges (2, m) over a modality list; keep: the positions kept (in new order) -> (2, m') relabelled."""
    pos = {v: i for i, v in enumerate(keep)}
    cols = [(pos[int(a)], pos[int(b)]) for a, b in edges.t().tolist() if int(a) in pos and int(b) in pos]
    return torch.tensor(cols, dtype=torch.long).t().reshape(2, -1)


class Graph4MMCore:
    """What both families share: backbones, encoder tables, the net, soft tokens and prompts of samples."""

    config: Graph4MMConfig
    device: torch.device

    def build(self, samples: list[GraphSample], seed: int, suffix: str) -> None:
        c = self.config
        _check(c)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.suffix = suffix
        lm = build_lm(c.lm, c.trainable, self.device, c.dtype, seed)
        self.tokenizer, self.lm_params = lm.tokenizer, lm.params
        self.compute_dtype, self.backbones["lm"] = lm.dtype, lm.identity
        self.enc = NodeEncodings(c.text_encoder, c.vision_encoder if c.use_images else None, self.device,
                                 target_text=True, max_length=c.text_max_length, progress=self.progress)
        self.enc.add(samples)
        self.backbones["text_encoder"] = text_encoder_identity(c.text_encoder).as_dict()
        if c.use_images:
            self.backbones["vision_encoder"] = vision_encoder_identity(c.vision_encoder).as_dict()
        torch.manual_seed(seed)  # a first (uncached) encoder load may have drawn random numbers
        width = unwrap(lm.model).get_input_embeddings().weight.shape[1]
        self.module = Graph4MMNet(lm.model, c, self.enc.text_dim, self.enc.image_dim if c.use_images else 0,
                                  width).to(self.device)
        self.own_params = self.module.graph4mm_parameters()
        self.params = self.lm_params + self.own_params
        self.optimizer = lm_utils.make_optimizer([(self.own_params, c.lr), (self.lm_params, c.lm_lr)],
                                                 c.weight_decay, betas=(0.9, 0.95))  # public code's AdamW betas

    # ------------------------------------------------------------------ soft tokens
    def _modalities(self, samples: list[GraphSample]) -> tuple[PackedModality, PackedModality, list[list[int]]]:
        """Pack the text nodes (at most ``max_text_nodes``, nearest first) and image slots (at most
        ``max_image_slots``) of each sample; also returns each sample's slot -> sample position list."""
        c = self.config
        texts, images, slot_nodes = [], [], []
        for s in samples:
            v = modality_views(s)
            order = {j: i for i, j in enumerate([0, *hop_priority(s)])}
            t_keep = [i for i in sorted(range(len(v.text_nodes)), key=lambda i: order[int(v.text_nodes[i])])
                      if self.enc.text_row(s.nodes[int(v.text_nodes[i])].text) >= 0][:c.max_text_nodes]
            texts.append(([self.enc.text_row(s.nodes[int(v.text_nodes[i])].text) for i in t_keep],
                          [max(s.nodes[int(v.text_nodes[i])].hop, -1) for i in t_keep], _keep_edges(v.text_edges,
                                                                                                     t_keep)))
            i_keep = []
            if c.use_images:
                ranked = sorted(range(len(v.image_nodes)), key=lambda i: order[int(v.image_nodes[i])])
                i_keep = [i for i in ranked if self.enc.image_row(s.nodes[int(v.image_nodes[i])].image) >= 0]
                i_keep = i_keep[:c.max_image_slots]
            images.append(([self.enc.image_row(s.nodes[int(v.image_nodes[i])].image) for i in i_keep],
                           [max(s.nodes[int(v.image_nodes[i])].hop, -1) for i in i_keep],
                           _keep_edges(v.image_edges, i_keep)))
            slot_nodes.append([int(v.image_nodes[i]) for i in i_keep])
        return _pack(texts, self.device), _pack(images, self.device), slot_nodes

    def soft_tokens(self, samples: list[GraphSample]) -> list[dict[int, torch.Tensor]]:
        """Per sample: sample position of each image slot's node -> its (queries_per_image, LM width) tokens."""
        self.enc.add(samples)
        c, net = self.config, self.module
        text, image, slot_nodes = self._modalities(samples)
        bsz = len(samples)
        if not c.use_images or image.rows.numel() == 0:
            return [{} for _ in samples]
        img = net.image_struct(net.image_proj(self.enc.image_table[image.rows]), image.edges, image.hops)
        n_i = max(len(x) for x in slot_nodes)
        img_pad = img.new_zeros(bsz, n_i, net.d)
        img_mask = torch.zeros(bsz, n_i, dtype=torch.bool, device=self.device)
        img_pad[image.batch, image.local] = img
        img_mask[image.batch, image.local] = True
        if net.qformer is None:   # ablation: each slot's tokens are its image node, repeated
            groups = img_pad.unsqueeze(2).expand(-1, -1, net.q, -1)
        else:
            txt_pad = txt_mask = None
            if text.rows.numel():
                txt = net.text_struct(net.text_proj(self.enc.text_table[text.rows]), text.edges, text.hops)
                n_t = int(text.local.max()) + 1
                txt_pad = txt.new_zeros(bsz, n_t, net.d)
                txt_mask = torch.zeros(bsz, n_t, dtype=torch.bool, device=self.device)
                txt_pad[text.batch, text.local] = txt
                txt_mask[text.batch, text.local] = True
            queries = net.qformer(txt_pad, txt_mask, img_pad, img_mask)               # (B, slots * q, d)
            groups = queries.view(bsz, c.max_image_slots, net.q, net.d)[:, :n_i]
        tokens = net.out_proj(groups)                                               # (B, n_i, q, H)
        return [{j: tokens[b, s] for s, j in enumerate(nodes)} for b, nodes in enumerate(slot_nodes)]

    def prompts(self, samples: list[GraphSample]) -> list[list[Any]]:
        c = self.config
        out = []
        for s, soft in zip(samples, self.soft_tokens(samples), strict=True):
            if c.placement == "prefix":
                parts, _ = prefix_prompt(self.tokenizer, s, [soft[j] for j in sorted(soft)], c.max_prompt_tokens,
                                         self.suffix)
            else:
                parts, _ = interleaved_prompt(self.tokenizer, s, soft, c.max_prompt_tokens, self.suffix)
            out.append(parts)
        return out

    def batch(self, samples: list[GraphSample], targets: list[list[int]] | None, training: bool) -> dict[str, Any]:
        with autocast(self.device, self.compute_dtype):
            parts = self.prompts(samples)
        return lm_utils.collate(parts, targets, pad_token_id=lm_utils.pad_id(self.tokenizer),
                                padding_side="right" if training else "left",
                                embed=unwrap(self.module.lm).get_input_embeddings(), device=self.device)

    def lm_epoch(self, epoch: int, samples: list[GraphSample], targets: list[list[int]]) -> float:
        """One epoch of the target-token LM loss over ``samples``."""
        c = self.config
        n = len(samples)
        if n == 0 or self.optimizer is None:
            return 0.0
        self.module.train()
        perm = torch.randperm(n, generator=self.generator).tolist()
        total = 0.0
        bar = self.progress.bar(-(-n // c.batch_size), f"epoch {epoch}", unit="step")
        for s in range(0, n, c.batch_size):
            idx = perm[s:s + c.batch_size]
            b = self.batch([samples[i] for i in idx], [targets[i] for i in idx], training=True)
            loss = lm_utils.causal_lm_loss(self.module.lm, b)
            total += lm_utils.optimizer_step(loss, self.optimizer, self.params, c.grad_clip) * len(idx)
            bar.update()
        bar.close()
        return total / n

    # ------------------------------------------------------------------ protocol pieces
    def state_dict(self) -> dict[str, Any]:
        return lm_utils.trainable_state(self.module) if self.module is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.module is not None:
            lm_utils.load_trainable_state(self.module, state)

    def describe(self) -> dict[str, Any]:
        if self.module is None:
            return {}
        c = self.config
        return {"lm": c.lm, "trainable": c.trainable, "trainable_parameters": sum(p.numel() for p in self.params),
                "graph4mm_parameters": sum(p.numel() for p in self.own_params),
                "text_variant": c.text_variant or c.variant, "image_variant": c.image_variant or c.variant,
                "encoded": self.enc.counts(), "placement": c.placement,
                "loss": "cross-entropy on target tokens only"}


# --------------------------------------------------------------------------- generation
# Presets chosen on validation only (README, Graph4MM section, has the runs).
GEN_PRESETS: dict[str, dict[str, Any]] = {}


@register_model("graph4mm")
class Graph4MMGenerator(Graph4MMCore, GenerationModel):
    description = ("Graph4MM (ICML 2025): hop-diffused attention over text and image graphs, MM-QFormer tokens "
                   "interleaved into an LM (SmolLM2-135M by default)")
    Config = Graph4MMConfig
    presets = GEN_PRESETS

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


# --------------------------------------------------------------------------- classification
CLS_PRESETS: dict[str, dict[str, Any]] = {}


@register_model("graph4mm")
class Graph4MMClassifier(Graph4MMCore, ClassificationModel):
    description = Graph4MMGenerator.description
    Config = Graph4MMConfig
    presets = CLS_PRESETS

    def setup(self, data: ClassificationTrainingData, seed: int) -> None:
        c = self.config
        unseen = sorted(set(data.candidate_classes) - set(data.train_classes))
        if c.head == "linear" and unseen:
            raise ConfigError(f"graph4mm: candidate classes {unseen} never occur in training (a zero-shot split); a "
                              f"linear head cannot score them. Use --set head=likelihood")
        if data.assemble is None:
            raise ConfigError(f"graph4mm: task {data.task} gives no assembled samples")
        self.view = data
        nodes = torch.cat([data.train_nodes, data.valid_nodes, data.test_nodes]).tolist()
        self._samples: dict[int, GraphSample] = {}
        self.build(self._sample_list(nodes), seed, CLASS_SUFFIX)
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
            raise ConfigError("graph4mm: a class name has no tokens under label_template")
        self.cls_head: nn.Linear | None = None
        if c.head == "linear":
            width = unwrap(self.module.lm).get_input_embeddings().weight.shape[1]
            self.train_classes = sorted(seen)
            self.module.cls_head = nn.Linear(width, len(self.train_classes)).to(self.device)
            self.cls_head = self.module.cls_head
            self.own_params = self.module.graph4mm_parameters()
            self.params = self.lm_params + self.own_params
            self.optimizer = lm_utils.make_optimizer([(self.own_params, c.lr), (self.lm_params, c.lm_lr)],
                                                     c.weight_decay, betas=(0.9, 0.95))

    def _sample_list(self, nodes: list[int]) -> list[GraphSample]:
        for v in nodes:
            if v not in self._samples:
                self._samples[v] = self.view.assemble(v)
        return [self._samples[v] for v in nodes]

    def _pooled(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean of the LM's final hidden states over each prompt's real positions: (B, H)."""
        rows, cols = b["attention_mask"].nonzero(as_tuple=True)
        h = hidden_at(self.module.lm, b, rows, cols).float()
        out = h.new_zeros(b["attention_mask"].shape[0], h.shape[-1]).index_add_(0, rows, h)
        return out / b["attention_mask"].sum(1, keepdim=True).clamp_min(1).float()

    def train_epoch(self, epoch: int) -> float:
        c = self.config
        if self.cls_head is None:
            targets = [self.label_ids[y] for y in self.train_labels]
            return self.lm_epoch(epoch, self._sample_list(self.train_nodes), targets)
        n = len(self.train_nodes)
        self.module.train()
        perm = torch.randperm(n, generator=self.generator).tolist()
        pos = {k: i for i, k in enumerate(self.train_classes)}
        total = 0.0
        for s in range(0, n, c.batch_size):
            idx = perm[s:s + c.batch_size]
            b = self.batch(self._sample_list([self.train_nodes[i] for i in idx]), None, training=False)
            logits = self.cls_head(self._pooled(b))
            y = torch.tensor([pos[self.train_labels[i]] for i in idx], device=self.device)
            total += lm_utils.optimizer_step(F.cross_entropy(logits, y), self.optimizer, self.params,
                                             c.grad_clip) * len(idx)
        return total / max(n, 1)

    @torch.no_grad()
    def predict(self, nodes: torch.Tensor) -> torch.Tensor:
        samples = self._sample_list([int(v) for v in nodes.tolist()])
        scores = torch.full((len(samples), self.num_classes), -1e9, device=self.device)
        if self.cls_head is not None:
            b = self.batch(samples, None, training=False)
            scores[:, self.train_classes] = self.cls_head(self._pooled(b)).float()
            return scores
        with autocast(self.device, self.compute_dtype):
            parts = self.prompts(samples)
        ll = lm_decode.label_log_likelihoods(self.module.lm, parts, [self.label_ids[k] for k in self.candidates],
                                             pad_token_id=lm_utils.pad_id(self.tokenizer),
                                             batch_size=self.config.eval_batch_size)
        scores[:, self.candidates] = ll.to(self.device)
        return scores
