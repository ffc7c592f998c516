"""MyGO (Zhang et al., "Tokenization, Fusion, and Augmentation: Towards Fine-grained Multi-modal Entity
Representation", AAAI 2025, arXiv 2404.09468), written for mmbench's KGC adapter protocol.

Pipeline (shapes with E entities, k_v / k_t visual / text tokens, d = ``dim``):
  modality tokenization   top-k visual and text tokens per entity (``mmbench.models.tokenize``);
                          frozen token embeddings -> trained Linear per modality -> LayerNorm -> dropout,
                          plus one learned bias vector per modality (no per-position embeddings)
  CMEE                    [ENT; s_e; v_1..v_kv; w_1..w_kt] (E, 2 + k_v + k_t, d) -> Transformer encoder
                          (post-LN, ReLU) with padded tokens masked -> output at [ENT]: entity reps (E, d)
  CTE                     [anchor rep + p_0; relation + p_1; [MASK] + p_2] (B, 3, d) -> Transformer ->
                          context at [MASK] and relation output at position 1
  Tucker decoder          BN -> dropout 0.3 -> x W_r (W_r = relation output x core, dropout 0.4) -> BN ->
                          dropout 0.5 -> scores against all entity reps (B, E); cross-entropy
  FGCL                    a second CMEE pass with fresh dropout for sampled entities; views [ENT], mean
                          of all tokens, mean of visual tokens, mean of text tokens (padding excluded),
                          each contrasted with pass 1's [ENT] by in-batch InfoNCE; weight ``mu``

Head prediction masks the head position, (MASK, r, t), as the public code (``head_query=reciprocal``: the
query (t, r + R, MASK) with a second relation table). See README "MyGO in mmbench" for where mmbench differs
from the public code and what each difference measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.api import KGCModel, KGTrainingData, TrainSchedule
from mmbench.errors import ConfigError
from mmbench.models.tokenize import EntityTokens, text_tokens, visual_tokens
from mmbench.registry import register_model

INITS = ("public", "mmbench")
RELATION_DROPOUTS = ("per-relation", "per-query")
HEAD_QUERIES = ("masked-head", "reciprocal")
FGCL_MEANS = ("masked", "public")


@dataclass
class MyGOConfig(TrainSchedule):
    """Defaults follow ``train_mygo_fgc.py`` of zjukg/MyGO; per-dataset presets below."""

    epochs: int = 200
    eval_every: int = 10
    patience: int = 3
    dim: int = 200
    hidden_dim: int = 200            # Transformer FFN width
    num_heads: int = 2
    num_layers_ent: int = 1          # CMEE layers
    num_layers_dec: int = 2          # CTE layers
    dropout: float = 0.01            # inside the Transformers
    emb_dropout: float = 0.9         # structure and relation embeddings
    vis_dropout: float = 0.4
    txt_dropout: float = 0.1
    tucker_dropouts: tuple = (0.3, 0.4, 0.5)
    max_vis_tokens: int = 8
    max_txt_tokens: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    batch_size: int = 2048
    grad_clip: float = 0.1
    restart_period: int = 50         # CosineAnnealingWarmRestarts T_0 (epochs), T_mult 2
    label_smoothing: float = 0.0
    score_scale: float = 1.0         # logits = score_scale * <query, entity>; 1.0 is the public code
    mu: float = 0.0                  # FGCL weight (the public default 0 means off)
    use_fgcl: bool = True
    fgcl_temperature: float = 0.5
    fgcl_samples: int = 512
    text_backbone: str = "minilm"    # BERT-uncased WordPiece ids + frozen embeddings, offline
    keep_stopwords: bool = False     # True reproduces the public DB15K-textual-v2.json behaviour
    keep_special_tokens: bool = False
    visual_codes: int = 512          # k-means codebook size when the data ships no visual tokens
    image_codes: int = 0             # > 0: one more token per image, its mean patch feature quantised (codebook size)
    both_directions: bool = False    # False: each triple masks head or tail (p=0.5) per epoch, as MyGO
    # the public code's initialisations, once-per-step relation masks and masked-head queries are the defaults
    # since the 4-epoch parity comparison (README, "MyGO in mmbench"); mmbench's first choices stay as options
    init: str = "public"             # public: the public code's initialisations | mmbench: mmbench's first ones
    relation_dropout: str = "per-relation"   # per-relation: one mask per relation row per step (public) | per-query
    # head prediction: masked-head (public: (MASK, r, t), the output at position 0) | reciprocal ((t, r + R, MASK))
    head_query: str = "masked-head"
    # FGCL mean views: masked (padding excluded, rows without the modality left out) | public (model_mygo.py's
    # contrastive_loss_finegrained: plain means over every position, padding included, the text view without
    # the sequence's last position, every row kept)
    fgcl_means: str = "masked"

    # keys added after records existed: at these values a run key leaves them out (``runner.run_key_config``),
    # so records made before them keep their identity; the values reproduce what mmbench did before
    keys_added_later: ClassVar[dict[str, Any]] = {"init": "mmbench", "relation_dropout": "per-query",
                                                  "head_query": "reciprocal", "fgcl_means": "masked"}

    def __post_init__(self) -> None:
        for key, allowed in (("init", INITS), ("relation_dropout", RELATION_DROPOUTS), ("head_query", HEAD_QUERIES),
                             ("fgcl_means", FGCL_MEANS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"model mygo: {key}={getattr(self, key)!r} is not one of {', '.join(allowed)}")


PRESETS: dict[str, dict[str, Any]] = {
    # zjukg/MyGO run.sh (DB15K line)
    "db15k": dict(epochs=1500, eval_every=50, lr=1e-3, dim=256, hidden_dim=1024, max_vis_tokens=8,
                  max_txt_tokens=4, num_heads=2, emb_dropout=0.6, vis_dropout=0.3, txt_dropout=0.1,
                  num_layers_dec=1, mu=0.01),
    # zjukg/MyGO run.sh (MKG-W line)
    "mkg-w": dict(epochs=1500, eval_every=50, lr=5e-4, dim=256, hidden_dim=1024, max_vis_tokens=8,
                  max_txt_tokens=8, num_heads=4, emb_dropout=0.9, vis_dropout=0.4, txt_dropout=0.1,
                  num_layers_dec=2, mu=0.001),
    # the author in zjukg/MyGO issue #34 (2026-03): lr, dim, token counts and mu; the rest are defaults
    "mkg-y": dict(epochs=1500, eval_every=50, lr=5e-4, dim=200, max_vis_tokens=6, max_txt_tokens=18, mu=0.001),
    # mmbench's choice for the offline synthetic task, from runs scored on its validation MRR (seed 0; README,
    # MyGO section): narrow model for CPU runtime; logits scaled by 1/16 (unscaled, the first loss is 15 against
    # ln 3000 = 8 and valid MRR is 0.012 after 10 epochs, against 0.05 scaled); clipping at 1.0 (0.1 barely
    # moved the loss); lr 1e-2 trained slower than 5e-3; light Tucker dropouts (the public 0.3/0.4/0.5 with
    # structure dropout 0.6 kept the loss near 6 for 80 epochs); one 100-epoch cosine cycle; per entity the 4
    # patch codes of its image plus one image-level code (the patches' independent noise hides the region in
    # per-patch codes: valid 0.207 without, 0.239 with); structure dropout 0.3 (0.1: 0.239, 0.3: 0.291,
    # 0.5: 0.297 but 40% longer); then for runtime: batch 1024 at lr 7e-3, no Transformer dropout (the
    # public 0.01 costs a Bernoulli draw per activation), 256 FGCL samples, patience 3: valid 0.282 in 328 s
    # against 0.291 in 724 s.
    "synth-mmkg": dict(epochs=100, eval_every=5, patience=3, restart_period=100, lr=7e-3, dim=64, hidden_dim=128,
                       num_heads=2, max_vis_tokens=5, max_txt_tokens=8, dropout=0.0, emb_dropout=0.3,
                       vis_dropout=0.2, txt_dropout=0.1, tucker_dropouts=(0.1, 0.1, 0.1), num_layers_dec=1,
                       mu=0.01, fgcl_samples=256, batch_size=1024, grad_clip=1.0, label_smoothing=0.1,
                       visual_codes=256, image_codes=256, score_scale=0.0625,
                       # tuned with mmbench's first initialisations and per-query relation dropout (kept)
                       init="mmbench", relation_dropout="per-query", head_query="reciprocal"),
}


class ModalityTokens(nn.Module):
    """Frozen token table -> Linear -> LayerNorm -> dropout, plus one learned modality bias.

    forward() -> (E, k, d) token embeddings and the (E, k) mask of real tokens
    """

    def __init__(self, tokens: EntityTokens, dim: int, dropout: float, init: str):
        super().__init__()
        self.register_buffer("ids", tokens.ids, persistent=False)
        self.register_buffer("mask", tokens.mask, persistent=False)
        self.table = nn.Embedding.from_pretrained(tokens.table.float(), freeze=True)
        self.proj = nn.Linear(tokens.table.shape[1], dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(1, 1, dim))
        if init == "public":  # model_mygo.py: xavier_uniform_ on the projections and the (1, 1, d) offsets
            nn.init.xavier_uniform_(self.proj.weight)
            nn.init.xavier_uniform_(self.bias)
        else:
            nn.init.normal_(self.bias, std=0.02)

    def forward(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.ids if rows is None else self.ids[rows]
        mask = self.mask if rows is None else self.mask[rows]
        return self.drop(self.norm(self.proj(self.table(ids)))) + self.bias, mask


def transformer(dim: int, heads: int, hidden: int, dropout: float, layers: int) -> nn.TransformerEncoder:
    """PyTorch defaults as in the public code: post-LayerNorm, ReLU."""
    layer = nn.TransformerEncoderLayer(dim, heads, hidden, dropout, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class TuckerHead(nn.Module):
    """Tucker decoder with a per-query relation vector (the CTE output): (B, d), (B, d) -> (B, d)."""

    def __init__(self, dim: int, dropouts: tuple, init: str):
        super().__init__()
        self.core = nn.Parameter(torch.empty(dim, dim, dim))
        if init == "public":  # MyGO's model_new.py: xavier_uniform_ (bound sqrt(6 / (2 d^2))), rms ~ 1 / (sqrt(2) d)
            nn.init.xavier_uniform_(self.core)
        else:                 # TuckER's uniform(-1, 1): behind BatchNorm, Adam's relative steps are ~150x smaller
            nn.init.uniform_(self.core, -1.0, 1.0)
        self.bn0, self.bn1 = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        self.d0, self.d1, self.d2 = (nn.Dropout(p) for p in dropouts)

    def forward(self, ctx: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        d = ctx.shape[1]
        x = self.d0(self.bn0(ctx)).unsqueeze(1)                           # (B, 1, d)
        w = self.d1((rel @ self.core.view(d, d * d)).view(-1, d, d))      # (B, d, d)
        return self.d2(self.bn1(torch.bmm(x, w).squeeze(1)))              # (B, d)


class MyGONet(nn.Module):
    def __init__(self, data: KGTrainingData, c: MyGOConfig, vis: EntityTokens | None, txt: EntityTokens | None):
        super().__init__()
        d, n_e, n_r = c.dim, data.num_entities, data.num_relations
        self.ent = nn.Embedding(n_e, d)                  # structural embedding s_e
        self.num_relations = n_r
        self.masked_head = c.head_query == "masked-head"
        self.rel = nn.Embedding(n_r if self.masked_head else 2 * n_r, d)   # reciprocal: r and r + R
        self.ent_token = nn.Parameter(torch.empty(1, 1, d))    # [ENT]
        self.mask_token = nn.Parameter(torch.empty(1, d))      # [MASK] for the predicted side
        self.str_bias = nn.Parameter(torch.zeros(1, d))
        self.ctx_pos = nn.Parameter(torch.empty(1, 3, d))      # CTE position embeddings
        self.relation_dropout = c.relation_dropout
        self.fgcl_means = c.fgcl_means
        if c.init == "public":
            # model_mygo.py: xavier_uniform_ on (E, 1, d) / (R, 1, d) tables: bound sqrt(6 / (d (n + 1))), which
            # shrinks with the table size; the (1, 1, d) offsets get sqrt(3 / d), the (1, d) [MASK] sqrt(6 / (d + 1))
            nn.init.uniform_(self.ent.weight, -math.sqrt(6 / (d * (n_e + 1))), math.sqrt(6 / (d * (n_e + 1))))
            nn.init.uniform_(self.rel.weight, -math.sqrt(6 / (d * (n_r + 1))), math.sqrt(6 / (d * (n_r + 1))))
            for t in (self.ent_token, self.str_bias, self.ctx_pos):
                nn.init.uniform_(t, -math.sqrt(3 / d), math.sqrt(3 / d))
            nn.init.xavier_uniform_(self.mask_token)
        else:
            nn.init.xavier_normal_(self.ent.weight)
            nn.init.xavier_normal_(self.rel.weight)
            for t in (self.ent_token, self.mask_token, self.ctx_pos):
                nn.init.normal_(t, std=0.02)
        self.emb_norm, self.rel_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.emb_drop = nn.Dropout(c.emb_dropout)
        self.vis = ModalityTokens(vis, d, c.vis_dropout, c.init) if vis is not None else None
        self.txt = ModalityTokens(txt, d, c.txt_dropout, c.init) if txt is not None else None
        self.k_vis = vis.ids.shape[1] if vis is not None else 0
        self.cmee = transformer(d, c.num_heads, c.hidden_dim, c.dropout, c.num_layers_ent)
        self.cte = transformer(d, c.num_heads, c.hidden_dim, c.dropout, c.num_layers_dec)
        self.tucker = TuckerHead(d, c.tucker_dropouts, c.init)
        self.score_scale = c.score_scale

    def encode(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """CMEE over all entities (or ``rows``): -> outputs (n, 2 + k_v + k_t, d), padding mask (n, L)."""
        s = self.ent.weight if rows is None else self.ent(rows)
        n = s.shape[0]
        parts = [self.ent_token.expand(n, -1, -1), (self.emb_drop(self.emb_norm(s)) + self.str_bias).unsqueeze(1)]
        keep = [torch.ones(n, 2, dtype=torch.bool, device=s.device)]
        for mod in (self.vis, self.txt):
            if mod is not None:
                tok, mask = mod(rows)
                parts.append(tok)
                keep.append(mask)
        seq, keep_mask = torch.cat(parts, 1), torch.cat(keep, 1)
        return self.cmee(seq, src_key_padding_mask=~keep_mask), keep_mask

    def entities(self) -> torch.Tensor:
        """-> (E, d): the [ENT] outputs."""
        return self.encode()[0][:, 0]

    def query(self, ents: torch.Tensor, anchors: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """CTE + Tucker: (B,), (B,) -> (B, d) query vectors scored by ``@ ents.T``. A relation id r + R asks
        for the head of (?, r, anchor).

        Head queries: ``reciprocal`` reads (anchor, r + R, MASK) with its own relation row; ``masked-head``
        (the public code's ``score``) reads (MASK, r, anchor) with the relation's one row and takes the CTE
        output at position 0. Relation dropout: ``per-relation`` draws one mask per relation row for the
        whole call (a training step scores one batch), so all queries of a relation agree, as the public
        code's once-per-step ``embdr(str_rel_ln(rel_embeddings))``; ``per-query`` draws one mask per query."""
        is_head = relations >= self.num_relations
        if self.masked_head:
            relations = relations % self.num_relations
        if self.relation_dropout == "per-relation":
            r = self.emb_drop(self.rel_norm(self.rel.weight))[relations]
        else:
            r = self.emb_drop(self.rel_norm(self.rel(relations)))
        anchor, mask = ents[anchors], self.mask_token.expand(len(anchors), -1)
        if self.masked_head:
            first = torch.where(is_head[:, None], mask, anchor)
            last = torch.where(is_head[:, None], anchor, mask)
        else:
            first, last = anchor, mask
        out = self.cte(torch.stack([first, r, last], 1) + self.ctx_pos)
        ctx = torch.where(is_head[:, None], out[:, 0], out[:, 2]) if self.masked_head else out[:, 2]
        return self.tucker(ctx, out[:, 1])

    def logits(self, ents: torch.Tensor, anchors: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """(B,), (B,) -> (B, E) scores against every entity representation in ``ents`` (E, d).

        Both sides leave a normalisation layer (BatchNorm, post-LN), so an unscaled dot product has a
        spread of about sqrt(d) per logit at initialisation; ``score_scale`` < 1 tempers it (applied to
        the (B, d) query, not the (B, E) scores).
        """
        return (self.query(ents, anchors, relations) * self.score_scale) @ ents.t()

    def views(self, rows: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """FGCL views of a fresh CMEE pass for ``rows``: name -> ((n, d) view, (n,) bool present)."""
        out, keep = self.encode(rows)
        n = len(rows)
        all_present = torch.ones(n, dtype=torch.bool, device=out.device)
        if self.fgcl_means == "public":
            views = {"ent": (out[:, 0], all_present), "global": (out.mean(1), all_present)}
            if self.vis is not None:
                views["visual"] = (out[:, 2:2 + self.k_vis].mean(1), all_present)
            if self.txt is not None:
                views["text"] = (out[:, 2 + self.k_vis:-1].mean(1), all_present)
            return views
        views = {"ent": (out[:, 0], all_present), "global": (_masked_mean(out, keep), all_present)}
        start = 2
        for name, mod, k in (("visual", self.vis, self.k_vis), ("text", self.txt, None)):
            if mod is None:
                continue
            k = mod.ids.shape[1] if k is None else k
            m = keep[:, start:start + k]
            views[name] = (_masked_mean(out[:, start:start + k], m), m.any(1))
            start += k
        return views


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x (n, L, d), keep (n, L) bool -> (n, d) mean over kept positions (zeros where none)."""
    w = keep.float().unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float) -> torch.Tensor:
    """In-batch InfoNCE: row i of ``anchor`` should match row i of ``positive`` among all rows.

    anchor, positive: (n, d) -> scalar; similarities are cosine / temperature (one direction, as MyGO)
    """
    logits = F.normalize(anchor, dim=-1) @ F.normalize(positive, dim=-1).t() / temperature
    return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))


def fgcl_loss(ent_pass1: torch.Tensor, views: dict[str, tuple[torch.Tensor, torch.Tensor]],
              temperature: float) -> torch.Tensor:
    """Mean over the views of InfoNCE(pass-1 [ENT], view); rows lacking a view's modality are left out."""
    terms = []
    for view, present in views.values():
        if int(present.sum()) >= 2:
            terms.append(info_nce(ent_pass1[present], view[present], temperature))
    return torch.stack(terms).mean() if terms else ent_pass1.sum() * 0.0


@register_model("mygo")
class MyGO(KGCModel):
    description = "MyGO (AAAI 2025): modality tokens + Transformer entity/triple encoders + Tucker + FGCL"
    Config = MyGOConfig
    presets = PRESETS

    def setup(self, data: KGTrainingData, seed: int) -> None:
        c = self.config
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.vis_tokens = visual_tokens(data.modalities, c.max_vis_tokens, c.visual_codes, seed=0,
                                        image_codes=c.image_codes) \
            if c.max_vis_tokens > 0 else None
        self.txt_tokens = text_tokens(data.modalities, c.max_txt_tokens, c.text_backbone, c.keep_stopwords,
                                      c.keep_special_tokens) if c.max_txt_tokens > 0 else None
        self.num_entities, self.num_relations = data.num_entities, data.num_relations
        self.module = MyGONet(data, c, self.vis_tokens, self.txt_tokens).to(self.device)
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.optimizer, T_0=c.restart_period,
                                                                              T_mult=2)
        tr = data.train
        self.tail_queries = tr.clone().to(self.device)                                     # (h, r) -> t
        self.head_queries = torch.stack([tr[:, 2], tr[:, 1] + data.num_relations, tr[:, 0]], 1).to(self.device)
        self._cache: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        out = {}
        for name, t in (("visual", self.vis_tokens), ("text", self.txt_tokens)):
            if t is not None:
                out[name] = {"source": t.source, "k": t.ids.shape[1], "coverage": round(t.coverage, 4),
                             "table": list(t.table.shape)}
        return out

    def _epoch_queries(self) -> torch.Tensor:
        if self.config.both_directions:
            q = torch.cat([self.tail_queries, self.head_queries])
        else:  # MyGO: each triple masks its head or its tail with probability 0.5, re-drawn every epoch
            side = (torch.rand(len(self.tail_queries), generator=self.generator) < 0.5).to(self.device)
            q = torch.where(side[:, None], self.head_queries, self.tail_queries)
        # random draws from the CPU generator: the same stream on every device
        return q[torch.randperm(len(q), generator=self.generator).to(self.device)]

    def train_epoch(self, epoch: int) -> float:
        c, net = self.config, self.module
        net.train()
        queries = self._epoch_queries()
        total = 0.0
        for start in range(0, len(queries), c.batch_size):
            batch = queries[start:start + c.batch_size]
            out, _ = net.encode()                       # all entity reps once per step
            ents = out[:, 0]
            logits = net.logits(ents, batch[:, 0], batch[:, 1])
            loss = F.cross_entropy(logits, batch[:, 2], label_smoothing=c.label_smoothing)
            if c.use_fgcl and c.mu > 0:
                rows = torch.randperm(self.num_entities, generator=self.generator)[:c.fgcl_samples].to(self.device)
                loss = loss + c.mu * fgcl_loss(ents[rows], net.views(rows), c.fgcl_temperature)
            self.optimizer.zero_grad()
            loss.backward()
            if c.grad_clip > 0:
                nn.utils.clip_grad_norm_(net.parameters(), c.grad_clip)
            self.optimizer.step()
            total += loss.item() * len(batch)
        self.scheduler.step()
        return total / max(len(queries), 1)

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def begin_scoring(self) -> None:
        super().begin_scoring()
        with torch.no_grad():
            self._cache = self.module.entities()

    def end_scoring(self) -> None:
        self._cache = None
        super().end_scoring()

    def _ents(self) -> torch.Tensor:
        return self._cache if self._cache is not None else self.module.entities()

    def score_tails(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        return self.module.logits(self._ents(), heads, relations)

    def score_heads(self, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        return self.module.logits(self._ents(), tails, relations + self.num_relations)
