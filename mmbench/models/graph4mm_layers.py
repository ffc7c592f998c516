"""Graph4MM building blocks in plain torch (Ning et al., "Graph4MM: Weaving Multimodal Learning with Structural
Information", ICML 2025, arXiv 2510.16990; public code github.com/YennNing/Graph4MM,
``model/modelling_self_attention.py``).

Shapes: a batch of samples is packed PyG-style, N nodes of all samples concatenated, ``h (N, d)``, an
``edge_index (2, M)`` of edges j -> i stored as ``[src; dst] = [j; i]`` that never crosses samples, and an optional
``batch (N,)`` sample id per node (only used to check that no edge crosses samples).

``HopDiffusedAttention``  per edge j -> i the score q_i . k_j / sqrt(d_head) for each of ``heads`` heads, softmax
                          over the incoming edges of i (the graph "causal" mask), head average -> transition
                          matrix A (N, N), never formed: only its M' edge weights. Update
                          ``h + sum_{k=0..K} theta_k A^k h`` (paper) or ``sum_k theta_k A^k h`` (public code), with
                          theta_k = alpha (1 - alpha)^k and A^k h computed by K rounds of message passing.
``dense_hop_diffusion``   the reference: the same maths with a dense (N, N) masked softmax and matrix powers.
``HopAwareEncoding``      the paper's cheaper alternative: h + a learned embedding of the hop distance (hops
                          come from the sample assembly's BFS, ``SampleNode.hop``).
(MM-QFormer, the third block, is ``mmbench.models.mm_qformer``.)

How K counts: ``steps`` = K = the number of times A is applied = the highest power, so K + 1 terms
theta_0 .. theta_K. The public code's ``diffusion_steps=4`` counts *terms* (``range(steps)``, k = 0..3) and is
``steps=3`` here; the paper's "diffusion steps 2" is read as ``steps=2`` (k = 0, 1, 2).

Differences from the public code, on purpose: A is computed per sample (the public code's
``W * graph.unsqueeze(1)`` broadcasts to (B, B, N, N) and its ``.mean(dim=1)`` averages over the batch); theta is
renormalised to sum to 1 by default (the public alpha 0.1 over 4 terms sums to 0.3439); the residual ``h + ...``
follows the paper (``residual=False`` gives the public ``A_diff h``).

Heads: each head's softmax runs over the incoming edges only (the paper's A = softmax(M . A')), then the heads are
averaged. The public code instead masks and renormalises the head average of the *unmasked* softmax weights; the
two agree for one head, and both give row-stochastic A. Rows: a node without incoming edges has an all-zero row
of A (the public code's 0 / (0 + 1e-9)), so it keeps only theta_0 h (plus the residual). Self-loops: dropped by
default as the public ``normalize_graph``; ``self_loops=True`` lets a node attend to itself inside the softmax.
Backends: "csr" never materialises (M, d) tensors (sparse CSR matmul and ``sampled_addmm`` with a hand-written
backward), "gather" is the plain index / index_add version; tests check both against ``dense_hop_diffusion``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def diffusion_coefficients(alpha: float, steps: int, normalise: bool = True) -> list[float]:
    """theta_k = alpha (1 - alpha)^k for k = 0..steps (``steps + 1`` values).

    normalise: divide by their sum 1 - (1 - alpha)^(steps + 1) so the truncated series sums to 1 (False is the
    public code: alpha 0.1, steps 3 -> 0.1, 0.09, 0.081, 0.0729, sum 0.3439).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    theta = [alpha * (1.0 - alpha) ** k for k in range(steps + 1)]
    if normalise:
        total = sum(theta)
        theta = [t / total for t in theta]
    return theta


def prepare_edges(edge_index: Tensor, num_nodes: int, self_loops: bool = False,
                  batch: Tensor | None = None) -> Tensor:
    """Validate ``edge_index (2, M)``, drop every i -> i edge, then (``self_loops``) add exactly one per node;
    merge duplicate edges and sort by (destination, source), i.e. valid CSR order. Returns (2, M'), long.

    ``batch (N,)``: raise if an edge joins two samples.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be (2, M), got {tuple(edge_index.shape)}")
    edge_index = edge_index.long()
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")
    if batch is not None:
        if batch.shape != (num_nodes,):
            raise ValueError(f"batch must be ({num_nodes},), got {tuple(batch.shape)}")
        if bool((batch[edge_index[0]] != batch[edge_index[1]]).any()):
            raise ValueError("edge_index has edges between different samples")
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    if self_loops:
        loops = torch.arange(num_nodes, device=edge_index.device).expand(2, num_nodes)
        edge_index = torch.cat([edge_index, loops], dim=1)
    key = torch.unique(edge_index[1] * num_nodes + edge_index[0])      # sorted, distinct
    return torch.stack([key % num_nodes, torch.div(key, num_nodes, rounding_mode="floor")])


def _row_pointers(rows: Tensor, num_nodes: int) -> Tensor:
    """CSR row pointers (N + 1,) of sorted row ids (M,)."""
    counts = torch.bincount(rows, minlength=num_nodes)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


class EdgeGraph:
    """Prepared edges ``edge_index (2, M')`` (``prepare_edges``: distinct, sorted by destination then source) of N
    nodes plus CSR views of A (rows = destinations) and A^T (rows = sources; the stable sort keeps each row's
    columns sorted), built once per forward and shared by all layers."""

    def __init__(self, edge_index: Tensor, num_nodes: int):
        self.edge_index, self.num_nodes = edge_index, num_nodes
        self.src, self.dst = edge_index
        self.crow = _row_pointers(self.dst, num_nodes)
        self.perm_t = torch.sort(self.src, stable=True).indices           # A^T entry r is edge perm_t[r]
        self.crow_t = _row_pointers(self.src[self.perm_t], num_nodes)
        self.col_t = self.dst[self.perm_t]

    @property
    def num_edges(self) -> int:
        return self.src.numel()

    def _csr(self, crow: Tensor, col: Tensor, values: Tensor) -> Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            return torch.sparse_csr_tensor(crow, col, values, (self.num_nodes, self.num_nodes),
                                           check_invariants=False)

    def matrix(self, values: Tensor) -> Tensor:
        """Sparse CSR (N, N) with entry [dst_e, src_e] = values (M',)."""
        return self._csr(self.crow, self.src, values)

    def matrix_t(self, values: Tensor) -> Tensor:
        """Sparse CSR (N, N) of the transpose: entry [src_e, dst_e] = values (M',) (edge order)."""
        return self._csr(self.crow_t, self.col_t, values[self.perm_t])

    def sample(self, a: Tensor, b: Tensor) -> Tensor:
        """Per edge a[dst_e] . b[src_e] without gathering (M', c) copies: a, b (N, c) -> (M',)."""
        pattern = self.matrix(a.new_zeros(self.num_edges))
        return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


class _EdgeScores(torch.autograd.Function):
    """q (H, N, c), k (H, N, c) -> (M', H) with [e, h] = q[h, dst_e] . k[h, src_e] (CSR backend)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, graph: EdgeGraph) -> Tensor:
        ctx.graph = graph
        ctx.save_for_backward(q, k)
        return torch.stack([graph.sample(q[h], k[h]) for h in range(q.size(0))], 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        q, k = ctx.saved_tensors
        graph, heads = ctx.graph, range(q.size(0))
        grad = grad.contiguous()
        grad_q = torch.stack([graph.matrix(grad[:, h].contiguous()) @ k[h] for h in heads]) \
            if ctx.needs_input_grad[0] else None
        grad_k = torch.stack([graph.matrix_t(grad[:, h].contiguous()) @ q[h] for h in heads]) \
            if ctx.needs_input_grad[1] else None
        return grad_q, grad_k, None


class _Propagate(torch.autograd.Function):
    """weight (M',), x (N, d) -> A x (N, d) with A[dst_e, src_e] = weight_e (CSR backend)."""

    @staticmethod
    def forward(ctx, weight: Tensor, x: Tensor, graph: EdgeGraph) -> Tensor:
        ctx.graph = graph
        ctx.save_for_backward(weight, x)
        return graph.matrix(weight) @ x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        weight, x = ctx.saved_tensors
        graph, grad = ctx.graph, grad.contiguous()
        grad_w = graph.sample(grad, x) if ctx.needs_input_grad[0] else None
        grad_x = graph.matrix_t(weight) @ grad if ctx.needs_input_grad[1] else None
        return grad_w, grad_x, None


Backend = Literal["auto", "csr", "gather"]


def _use_csr(backend: Backend, x: Tensor) -> bool:
    """CSR kernels (``sampled_addmm``) take float32/float64 only; "auto" falls back to gather otherwise."""
    return backend == "csr" or (backend == "auto" and x.dtype in (torch.float32, torch.float64))


def edge_scores(q: Tensor, k: Tensor, graph: EdgeGraph, backend: Backend = "auto") -> Tensor:
    """Per edge and head q[h, dst_e] . k[h, src_e]: q, k (H, N, c) -> (M', H)."""
    if graph.num_edges == 0:
        return q.new_zeros(0, q.size(0))
    if _use_csr(backend, q):
        return _EdgeScores.apply(q.contiguous(), k.contiguous(), graph)
    return (q[:, graph.dst] * k[:, graph.src]).sum(-1).t()


def edge_softmax(scores: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """Softmax of ``scores (M, H)`` over the edges sharing a destination ``dst (M,)``; returns (M, H).

    A node without incoming edges owns no entry, i.e. its row of A is all zero.
    """
    index = dst.unsqueeze(1).expand_as(scores)
    row_max = scores.new_full((num_nodes, scores.size(1)), -math.inf)
    row_max = row_max.scatter_reduce(0, index, scores.detach(), reduce="amax", include_self=True)
    e = (scores - row_max[dst]).exp()
    denom = e.new_zeros(num_nodes, scores.size(1)).index_add(0, dst, e)
    return e / denom[dst]


def propagate(x: Tensor, graph: EdgeGraph, weight: Tensor, backend: Backend = "auto") -> Tensor:
    """One message-passing round ``A x``: out_i = sum over edges j -> i of a_ij x_j; x (N, d), weight (M',) ->
    (N, d). "csr": sparse CSR matmul (no (M', d) copies; deterministic on CPU); "gather": index_add of
    a_ij x_j, which materialises (M', d) and, on CUDA, uses atomics."""
    if graph.num_edges == 0:
        return torch.zeros_like(x)
    if _use_csr(backend, x):
        return _Propagate.apply(weight, x.contiguous(), graph)
    return x.new_zeros(x.shape).index_add(0, graph.dst, x[graph.src] * weight.unsqueeze(1))


class HopDiffusionLayer(nn.Module):
    """One Hop-Diffused Attention layer: ``h (N, d)`` + an ``EdgeGraph`` of M' prepared edges -> (N, d).

    q, k: Linear(d, d) with bias, split into ``heads`` heads of d / heads (as ``nn.MultiheadAttention``'s in-proj;
    the public code discards the attention output, so there is no value or output projection).
    """

    def __init__(self, dim: int, heads: int = 1, alpha: float = 0.1, steps: int = 2, normalise_theta: bool = True,
                 residual: bool = True, backend: Backend = "auto"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if backend not in ("auto", "csr", "gather"):
            raise ValueError(f"backend must be 'auto', 'csr' or 'gather', got {backend!r}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.alpha, self.steps, self.residual, self.backend = alpha, steps, residual, backend
        self.theta = diffusion_coefficients(alpha, steps, normalise_theta)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)

    def attention(self, h: Tensor, graph: EdgeGraph) -> Tensor:
        """Head-averaged edge weights (M',): per head softmax over each node's incoming edges, then the mean."""
        n = h.size(0)
        q = self.q(h).view(n, self.heads, self.head_dim).transpose(0, 1) / math.sqrt(self.head_dim)
        k = self.k(h).view(n, self.heads, self.head_dim).transpose(0, 1)
        scores = edge_scores(q, k, graph, self.backend)                   # (M', H)
        return edge_softmax(scores, graph.dst, n).mean(1)

    def forward(self, h: Tensor, graph: EdgeGraph) -> tuple[Tensor, Tensor]:
        """h (N, d), graph of M' edges -> (output (N, d), edge weights (M',))."""
        weight = self.attention(h, graph)
        x, out = h, self.theta[0] * h
        for theta in self.theta[1:]:
            x = propagate(x, graph, weight, self.backend)                 # X_{k+1} = A X_k
            out = out + theta * x
        return (h + out if self.residual else out), weight


@dataclass
class HopAttentionWeights:
    """Inspection output: ``edge_index (2, M')`` as ``prepare_edges`` returns it (sorted by destination), and
    ``weight (L, M')`` = A's entry A[dst, src] of each edge for each of the L layers."""

    edge_index: Tensor
    weight: Tensor


class HopDiffusedAttention(nn.Module):
    """Hop-Diffused Attention (paper section "Hop-Diffused Attention"; public ``AttentionDiffusion``), L layers.

    dim, heads: width d and number of attention heads (public code: 768, 12).
    alpha: teleport weight of theta_k = alpha (1 - alpha)^k (public code: 0.1).
    steps: K, the number of diffusion steps = highest power of A; K + 1 terms (public ``diffusion_steps=4`` is 3).
    layers: stacked layers, each with its own q/k; all use the same edges.
    self_loops: False (public code) drops i -> i edges, the node keeps itself only through theta_0 I; True adds
        one i -> i edge per node before the softmax. Input self-loops are always dropped first.
    normalise_theta: renormalise theta to sum 1 (False is the public code).
    residual: ``h + A_diff h`` (paper); False gives the public ``A_diff h``.
    backend: "csr" (sparse CSR matmul and ``sampled_addmm``: O(N d + M H) memory), "gather" (index/index_add,
        materialises (M, d)), "auto" = csr for float32/float64, else gather. Same maths.

    forward(h (N, d), edge_index (2, M), batch (N,) | None) -> (N, d), or with ``return_weights`` the pair
    (output, ``HopAttentionWeights``). Only first derivatives on the csr backend.
    """

    def __init__(self, dim: int, heads: int = 1, alpha: float = 0.1, steps: int = 2, layers: int = 1,
                 self_loops: bool = False, normalise_theta: bool = True, residual: bool = True,
                 backend: Backend = "auto"):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.self_loops = self_loops
        self.layers = nn.ModuleList(HopDiffusionLayer(dim, heads, alpha, steps, normalise_theta, residual, backend)
                                    for _ in range(layers))

    def forward(self, h: Tensor, edge_index: Tensor, batch: Tensor | None = None,
                return_weights: bool = False) -> Tensor | tuple[Tensor, HopAttentionWeights]:
        graph = EdgeGraph(prepare_edges(edge_index, h.size(0), self.self_loops, batch), h.size(0))
        weights = []
        for layer in self.layers:
            h, w = layer(h, graph)
            weights.append(w)
        if return_weights:
            return h, HopAttentionWeights(graph.edge_index, torch.stack(weights))
        return h


def dense_hop_diffusion(module: HopDiffusedAttention, h: Tensor, edge_index: Tensor,
                        return_matrices: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Reference implementation with dense matrices, same parameters as ``module``; O(N^2) memory, O(N^3) time.

    Per layer: boolean adjacency mask M (N, N) with M[i, j] = edge j -> i, diagonal set to ``module.self_loops``;
    scores (H, N, N) = Q_h K_h^T / sqrt(d_head) masked to -inf off M; softmax per row (an all-masked row -> 0);
    A = mean over heads (N, N); A_diff = sum_k theta_k A^k by repeated (N, N) @ (N, N) products (as the public code's
    ``matrix_power``); output ``h + A_diff h`` (or ``A_diff h``). h (N, d), edge_index (2, M) -> (N, d), and with
    ``return_matrices`` the list of the L matrices A.
    """
    n = h.size(0)
    mask = torch.zeros(n, n, dtype=torch.bool, device=h.device)
    mask[edge_index[1], edge_index[0]] = True
    mask.fill_diagonal_(module.self_loops)
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    matrices = []
    for layer in module.layers:
        q = layer.q(h).view(n, layer.heads, layer.head_dim).transpose(0, 1)
        k = layer.k(h).view(n, layer.heads, layer.head_dim).transpose(0, 1)
        scores = (q @ k.transpose(1, 2) / math.sqrt(layer.head_dim)).masked_fill(~mask, -math.inf)
        row_max = scores.amax(-1, keepdim=True).detach().clamp_min(torch.finfo(h.dtype).min)
        e = (scores - row_max).exp()                                       # exp(-inf) = 0 off the mask
        a = (e / e.sum(-1, keepdim=True).clamp_min(torch.finfo(h.dtype).tiny)).mean(0)
        power, a_diff = eye, layer.theta[0] * eye
        for theta in layer.theta[1:]:
            power = power @ a
            a_diff = a_diff + theta * power
        out = a_diff @ h
        h = h + out if layer.residual else out
        matrices.append(a)
    return (h, matrices) if return_matrices else h


class HopAwareEncoding(nn.Module):
    """Hop-Aware variant (paper; the public code creates ``text_hop_embedding`` but never adds it): h + E[hop].

    ``nn.Embedding(max_hop + 2, dim)``: rows 0..max_hop for hops 0..max_hop (larger hops clipped to max_hop), row
    max_hop + 1 for unreachable nodes (any negative hop). Init N(0, ``init_std``^2).
    forward(h (N, d) or (..., d), hop (N,) or (...,) long) -> same shape as h.
    """

    def __init__(self, dim: int, max_hop: int, init_std: float = 0.02):
        super().__init__()
        if max_hop < 0:
            raise ValueError(f"max_hop must be >= 0, got {max_hop}")
        self.max_hop = max_hop
        self.embedding = nn.Embedding(max_hop + 2, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def rows(self, hop: Tensor) -> Tensor:
        """Embedding row of each hop value: (...,) long -> (...,) long."""
        return torch.where(hop < 0, self.max_hop + 1, hop.clamp(max=self.max_hop))

    def forward(self, h: Tensor, hop: Tensor) -> Tensor:
        return h + self.embedding(self.rows(hop.long()))
