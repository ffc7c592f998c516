"""Text-only LM baselines for graph generation tasks: ``lm-node`` and ``lm-subgraph``.

Both fine-tune a causal LM (default SmolLM2-135M-Instruct, ``mmbench.backbones.causal_lm``) to continue a
plain-text prompt (``mmbench.models.lm_utils``: ``"{context}\\nSummary:"`` -> ``" {target}"`` + EOS, loss on
the target tokens only) and decode freely (greedy, or beam search when the card asks for beams).

  lm-node      context = the target node's own text (``nodes[0].text``); neighbours are ignored. The
               MMGL/Graph4MM ``section_only`` context (docs/reference-models.md, MMGL), with a decoder-only LM.
  lm-subgraph  context = the target's text, then ``"\\nContext:"`` and each neighbour's text as
               ``"\\n[{kind}] {text}"`` in sample order; over ``max_prompt_tokens`` the farthest neighbours
               (by hop, unreachable ones last, then by sample position) are dropped first, and the last one
               admitted may be cut. The ``text_only`` / SA-TE ("raw") context of MMGL without images.

What trains (``trainable``, see ``mmbench.models.lm_policies``): ``"last:4"`` by default: the last 4 of SmolLM2's
30 decoder layers and the final norm (~14M of 135M parameters); ``"all"`` is a full fine-tune, ``"none"`` uses
the LM zero-shot, ``"lora:r=8,alpha=16"`` / ``"prefix:n=10"`` are peft's LoRA and prefix tuning. The default is
a CPU budget choice: the backward pass then stops at layer 26, so a step costs little more than a forward
pass, and the optimiser state stays small. The public MMGL/Graph4MM scripts freeze the LM or use PEFT
(prefix, LoRA), i.e. they do not fine-tune it fully either.

Checkpoints (``state_dict``) hold the trainable parameters only; the frozen rest is rebuilt from the
backbone in ``setup``. ``num_parameters`` counts the whole LM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from mmbench.api import GenerationModel, GenerationTrainingData, GraphSample, TrainSchedule
from mmbench.models import lm_decode, lm_utils
from mmbench.models.lm_policies import build_lm
from mmbench.registry import register_model


@dataclass
class LMGenConfig(TrainSchedule):
    """Defaults: lr 5e-5 and weight decay 0.01 (AdamW as in the Graph4MM script, docs/reference-models.md G6, which
    uses 1e-4 for its adapters over a frozen LM; 5e-5 is the usual LM fine-tuning rate); 3 epochs as the
    paper's LLaMA generation runs; validation (free decoding) after every epoch."""

    epochs: int = 3
    eval_every: int = 1
    patience: int = 2
    eval_batch_size: int = 8
    lm: str = "smollm2"               # mmbench.backbones.causal_lm name ("tiny-llama" for tests), folder or hub name
    trainable: str = "last:4"         # "all" | "none" | "last:N" | "lora:r=8,alpha=16" | "prefix:n=10"
    dtype: str = "auto"               # fp32 | bf16 | fp16 | auto (fp32 on CPU, bf16 on a GPU that supports it)
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 8
    grad_clip: float = 1.0            # global grad-norm clip (0 = off)
    max_prompt_tokens: int = 384      # the whole prompt, "Summary:" suffix included
    max_target_tokens: int = 64       # training targets are cut here (EOS then follows)


class LMGenBase(lm_utils.TrainableLMState, GenerationModel):
    """Shared machinery: prompts from ``prompt_ids(sample)``, training on (prompt, target), free decoding."""

    Config = LMGenConfig
    context: ClassVar[str] = ""

    def prompt_ids(self, sample: GraphSample) -> list[int]:
        raise NotImplementedError

    def prompt_text(self, sample: GraphSample) -> str:
        """The prompt as text (for inspection and tests)."""
        return self.tokenizer.decode(self.prompt_ids(sample))

    def setup(self, data: GenerationTrainingData, seed: int) -> None:
        c = self.config
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        lm = build_lm(c.lm, c.trainable, self.device, c.dtype, seed)
        self.module, self.tokenizer, self.params = lm.model, lm.tokenizer, lm.params
        self.compute_dtype, self.backbones["lm"] = lm.dtype, lm.identity
        self.optimizer = lm_utils.make_optimizer([(self.params, c.lr)], c.weight_decay)
        self.train_prompts = [self.prompt_ids(s) for s in data.train]
        self.train_targets = [lm_utils.target_ids(self.tokenizer, t, c.max_target_tokens) for t in data.train_targets]

    def train_epoch(self, epoch: int) -> float:
        c = self.config
        n = len(self.train_prompts)
        if n == 0 or self.optimizer is None:
            return 0.0
        perm = torch.randperm(n, generator=self.generator).tolist()
        total = 0.0
        bar = self.progress.bar(-(-n // c.batch_size), f"epoch {epoch}", unit="step")
        for s in range(0, n, c.batch_size):
            idx = perm[s: s + c.batch_size]
            batch = lm_utils.collate([[self.train_prompts[i]] for i in idx], [self.train_targets[i] for i in idx],
                                     pad_token_id=lm_utils.pad_id(self.tokenizer), padding_side="right",
                                     device=self.device)
            total += lm_utils.train_step(self.module, batch, self.optimizer, self.params, c.grad_clip) * len(idx)
            bar.update()
        bar.close()
        return total / n

    def generate(self, samples: list[GraphSample], max_new_tokens: int, num_beams: int = 1) -> list[str]:
        if not samples:
            return []
        return lm_decode.generate_texts(self.module, self.tokenizer, [self.prompt_ids(s) for s in samples],
                                        max_new_tokens, num_beams)

    def describe(self) -> dict[str, Any]:
        if self.module is None:
            return {}
        return {"lm": self.config.lm, "context": self.context, "trainable": self.config.trainable,
                "trainable_parameters": sum(p.numel() for p in self.params),
                "prompt_format": "{context}\\nSummary: -> {target}<eos> (plain text, no chat template)",
                "loss": "cross-entropy on target tokens only"}


@register_model("lm-node")
class LMNode(LMGenBase):
    description = "causal LM (SmolLM2-135M) fine-tuned on the target node's text only"
    context = "target node text"

    def prompt_ids(self, sample: GraphSample) -> list[int]:
        return lm_utils.prompt_ids(self.tokenizer, sample.nodes[0].text, self.config.max_prompt_tokens)


@register_model("lm-subgraph")
class LMSubgraph(LMGenBase):
    description = "causal LM (SmolLM2-135M) fine-tuned on the target text plus its neighbours' texts"
    context = "target node text + neighbour texts (farthest dropped first)"

    def prompt_ids(self, sample: GraphSample) -> list[int]:
        neigh = [(i, n) for i, n in enumerate(sample.nodes[1:], 1) if n.text and n.text.strip()]
        pieces = [f"\n[{n.kind}] {n.text.strip()}" for _, n in neigh]
        # nearest first; a negative hop (unreachable in the sample's graph) counts as farthest
        priority = sorted(range(len(neigh)), key=lambda j: (neigh[j][1].hop if neigh[j][1].hop >= 0 else 1 << 30,
                                                            neigh[j][0]))
        ids, _ = lm_utils.context_prompt_ids(self.tokenizer, sample.nodes[0].text, pieces,
                                             self.config.max_prompt_tokens, priority)
        return ids
