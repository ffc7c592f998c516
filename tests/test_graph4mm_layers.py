"""Graph4MM building blocks: diffusion coefficients, Hop-Diffused Attention (sparse vs dense reference, masks,
no cross-sample mixing), the hop-aware embedding and MM-QFormer."""

from __future__ import annotations

import math

import pytest
import torch

from mmbench.models.graph4mm_layers import (
    EdgeGraph,
    HopAwareEncoding,
    HopDiffusedAttention,
    dense_hop_diffusion,
    diffusion_coefficients,
    prepare_edges,
)
from mmbench.models.mm_qformer import MMQFormer

# ---------------------------------------------------------------- diffusion coefficients


def test_coefficients_public_code_values():
    theta = diffusion_coefficients(0.1, 3, normalise=False)      # public diffusion_steps=4 terms
    assert theta == pytest.approx([0.1, 0.09, 0.081, 0.0729])
    assert sum(theta) == pytest.approx(0.3439)


def test_coefficients_normalised():
    theta = diffusion_coefficients(0.5, 2)
    assert theta == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert sum(diffusion_coefficients(0.1, 3)) == pytest.approx(1.0)
    assert diffusion_coefficients(1.0, 3) == pytest.approx([1.0, 0.0, 0.0, 0.0])
    assert diffusion_coefficients(0.3, 0) == [1.0]
    with pytest.raises(ValueError):
        diffusion_coefficients(0.0, 2)
    with pytest.raises(ValueError):
        diffusion_coefficients(0.5, -1)


# ---------------------------------------------------------------- hand-checked 3-node graph
# Path 0 - 1 - 2 as directed edges (src -> dst): 1->0, 0->1, 2->1, 1->2.
PATH3 = torch.tensor([[1, 0, 2, 1], [0, 1, 1, 2]])
LN3 = math.log(3.0)
H3 = torch.tensor([[LN3, 2.0], [1.0, -1.0], [0.0, 4.0]], dtype=torch.float64)


def _fixed_module(dim: int, heads: int, **kwargs) -> HopDiffusedAttention:
    """q = (sqrt(d_head), 0, ...) for every node in head 0 (zero in the others), k_j = (h_j[0], 0, ...): head 0's
    score of j -> i is exactly h_j[0], the other heads score 0 (uniform)."""
    m = HopDiffusedAttention(dim, heads=heads, **kwargs).double()
    layer = m.layers[0]
    with torch.no_grad():
        for lin in (layer.q, layer.k):
            lin.weight.zero_()
            lin.bias.zero_()
        layer.q.bias[0] = math.sqrt(dim // heads)
        layer.k.weight[0, 0] = 1.0
    return m


def test_hand_checked_update_paper():
    m = _fixed_module(2, 1, alpha=0.5, steps=2)
    out, w = m(H3, PATH3, return_weights=True)
    # A: node 0 <- 1 (1), node 1 <- 0 (e^ln3 / (e^ln3 + e^0) = 3/4) and <- 2 (1/4), node 2 <- 1 (1).
    assert torch.equal(w.edge_index, PATH3)
    torch.testing.assert_close(w.weight, torch.tensor([[1.0, 0.75, 0.25, 1.0]], dtype=torch.float64))
    # A H = [h1, 3/4 h0 + 1/4 h2, h1] = [[1, -1], [3/4 ln3, 5/2], [1, -1]]; A^2 H = [[3/4 ln3, 5/2], [1, -1], same].
    # theta = (4, 2, 1) / 7; output = H + 4/7 H + 2/7 AH + 1/7 A^2H.
    expected = torch.tensor([
        [11 / 7 * LN3 + 2 / 7 + 0.75 / 7 * LN3, 22 / 7 - 2 / 7 + 2.5 / 7],
        [11 / 7 * 1 + 2 / 7 * 0.75 * LN3 + 1 / 7, -11 / 7 + 2 / 7 * 2.5 - 1 / 7],
        [2 / 7 + 0.75 / 7 * LN3, 44 / 7 - 2 / 7 + 2.5 / 7],
    ], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(dense_hop_diffusion(m, H3, PATH3), expected)


def test_hand_checked_update_public_style():
    m = _fixed_module(2, 1, alpha=0.5, steps=2, normalise_theta=False, residual=False)
    out = m(H3, PATH3)
    # theta = (1/2, 1/4, 1/8), output = A_diff H with no residual.
    expected = torch.tensor([
        [0.5 * LN3 + 0.25 + 0.125 * 0.75 * LN3, 1.0 - 0.25 + 0.125 * 2.5],
        [0.5 + 0.25 * 0.75 * LN3 + 0.125, -0.5 + 0.25 * 2.5 - 0.125],
        [0.25 + 0.125 * 0.75 * LN3, 2.0 - 0.25 + 0.125 * 2.5],
    ], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_heads_are_averaged():
    h = torch.cat([H3, torch.zeros(3, 2, dtype=torch.float64)], 1)   # d 4, 2 heads of 2
    m = _fixed_module(4, 2)
    _, w = m(h, PATH3, return_weights=True)
    # head 0: (1, 3/4, 1/4, 1); head 1 uniform: (1, 1/2, 1/2, 1); mean (1, 5/8, 3/8, 1).
    torch.testing.assert_close(w.weight[0], torch.tensor([1.0, 0.625, 0.375, 1.0], dtype=torch.float64))


def test_self_loops_option():
    edges = torch.tensor([[1, 0, 2, 1, 1], [0, 1, 1, 2, 1]])          # last edge: a self-loop 1 -> 1
    m = _fixed_module(2, 1)
    _, w = m(H3, edges, return_weights=True)
    assert torch.equal(w.edge_index, PATH3)                          # dropped
    m_loop = _fixed_module(2, 1, self_loops=True)
    _, w = m_loop(H3, edges, return_weights=True)
    # one loop per node, sorted by (destination, source)
    assert w.edge_index.tolist() == [[0, 1, 0, 1, 2, 1, 2], [0, 0, 1, 1, 1, 2, 2]]
    # node 0 <- {0: e^ln3, 1: e^1}; node 1 <- {0: e^ln3, 1: e^1, 2: e^0}; node 2 <- {1: e, 2: 1}.
    e = math.e
    expected = [3 / (e + 3), e / (e + 3), 3 / (4 + e), e / (4 + e), 1 / (4 + e), e / (e + 1), 1 / (e + 1)]
    torch.testing.assert_close(w.weight[0], torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------- graph mask and locality


def _path_graph(n: int) -> torch.Tensor:
    a = torch.arange(n - 1)
    return torch.stack([torch.cat([a, a + 1]), torch.cat([a + 1, a])])


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_diffusion_reaches_exactly_k_hops(steps):
    torch.manual_seed(0)
    n, d = 8, 8
    edges = _path_graph(n)
    m = HopDiffusedAttention(d, heads=2, steps=steps).double()
    h = torch.randn(n, d, dtype=torch.float64)
    base = m(h, edges)
    for node in range(1, n):
        h2 = h.clone()
        h2[node] += 5.0
        changed = not torch.equal(m(h2, edges)[0], base[0])
        # node 0's output uses A rows of nodes < steps hops away, whose weights use keys <= steps hops away
        assert changed == (node <= steps), node


def test_weights_live_on_edges_and_rows_sum_to_one():
    torch.manual_seed(1)
    n, d = 10, 8
    edges = torch.tensor([[0, 2, 3, 3, 5, 7, 1], [1, 1, 1, 4, 4, 6, 0]])   # nodes 2, 3, 5, 7, 8, 9 have no in-edges
    m = HopDiffusedAttention(d, heads=4, self_loops=False).double()
    h = torch.randn(n, d, dtype=torch.float64)
    out, w = m(h, edges, return_weights=True)
    a = torch.zeros(n, n, dtype=torch.float64)
    a[w.edge_index[1], w.edge_index[0]] = w.weight[0]
    sums = a.sum(1)
    has_in = torch.zeros(n, dtype=torch.bool)
    has_in[edges[1]] = True
    torch.testing.assert_close(sums[has_in], torch.ones(int(has_in.sum()), dtype=torch.float64))
    assert torch.equal(sums[~has_in], torch.zeros(int((~has_in).sum()), dtype=torch.float64))
    _, dense = dense_hop_diffusion(m, h, edges, return_matrices=True)
    torch.testing.assert_close(dense[0], a)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[edges[1], edges[0]] = True
    assert torch.equal(dense[0][~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64))
    # a node without incoming edges keeps (1 + theta_0) h: the residual plus the k = 0 term only
    theta0 = m.layers[0].theta[0]
    torch.testing.assert_close(out[8], (1 + theta0) * h[8])


@pytest.mark.parametrize("backend", ["csr", "gather"])
def test_no_cross_sample_mixing(backend):
    torch.manual_seed(2)
    d = 16
    g1 = torch.randint(0, 12, (2, 40))
    g2 = torch.randint(0, 9, (2, 30)) + 12
    edges = torch.cat([g2, g1], 1)[:, torch.randperm(70)]                 # samples' edges interleaved
    batch = torch.cat([torch.zeros(12, dtype=torch.long), torch.ones(9, dtype=torch.long)])
    m = HopDiffusedAttention(d, heads=4, steps=3, layers=2, backend=backend)
    h = torch.randn(21, d)
    base = m(h, edges, batch)
    h2 = h.clone()
    h2[12:] = torch.randn(9, d) * 100
    out = m(h2, edges, batch)
    assert torch.equal(out[:12], base[:12])
    assert not torch.allclose(out[12:], base[12:])
    alone = m(h[:12], g1)                                    # sample 1 on its own
    torch.testing.assert_close(alone, base[:12], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="between different samples"):
        m(h, torch.cat([edges, torch.tensor([[0], [15]])], 1), batch)
    with pytest.raises(ValueError, match="outside"):
        m(h, torch.tensor([[0], [21]]))


# ---------------------------------------------------------------- sparse == dense reference


def _random_graph(gen: torch.Generator, n: int, m: int) -> torch.Tensor:
    edges = torch.randint(0, n, (2, m), generator=gen)
    return torch.unique(edges, dim=1)                        # duplicate-free; self-loops kept (dropped inside)


@pytest.mark.parametrize("steps", [0, 1, 2, 4])
@pytest.mark.parametrize("alpha", [0.1, 0.5])
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("self_loops", [False, True])
@pytest.mark.parametrize("backend", ["csr", "gather"])
def test_sparse_matches_dense(steps, alpha, heads, self_loops, backend):
    gen = torch.Generator().manual_seed(steps * 100 + heads * 10 + self_loops)
    torch.manual_seed(3)
    n, d = 23, 8
    edges = _random_graph(gen, n, 60)
    for normalise, residual, layers in [(True, True, 1), (False, False, 2)]:
        m = HopDiffusedAttention(d, heads=heads, alpha=alpha, steps=steps, layers=layers, self_loops=self_loops,
                                 normalise_theta=normalise, residual=residual, backend=backend).double()
        h = torch.randn(n, d, dtype=torch.float64, generator=gen)
        sparse, w = m(h, edges, return_weights=True)
        dense, mats = dense_hop_diffusion(m, h, edges, return_matrices=True)
        torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-10)
        for layer_w, a in zip(w.weight, mats, strict=True):
            torch.testing.assert_close(layer_w, a[w.edge_index[1], w.edge_index[0]], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["csr", "gather"])
def test_sparse_matches_dense_gradients(backend):
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    n, d = 30, 12
    edges = _random_graph(gen, n, 90)
    m = HopDiffusedAttention(d, heads=3, steps=3, layers=2, self_loops=True, backend=backend).double()
    h = torch.randn(n, d, dtype=torch.float64, generator=gen, requires_grad=True)
    target = torch.randn(n, d, dtype=torch.float64, generator=gen)
    grads = []
    for fn in (lambda: m(h, edges), lambda: dense_hop_diffusion(m, h, edges)):
        m.zero_grad()
        h.grad = None
        ((fn() - target) ** 2).sum().backward()
        grads.append([h.grad.clone()] + [p.grad.clone() for p in m.parameters()])
    for gs, gd in zip(*grads, strict=True):
        torch.testing.assert_close(gs, gd, rtol=1e-9, atol=1e-10)
        assert torch.isfinite(gs).all()


def test_float32_and_determinism():
    gen = torch.Generator().manual_seed(11)
    edges = _random_graph(gen, 50, 300)
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        m = HopDiffusedAttention(32, heads=4, steps=2)
        h = torch.randn(50, 32)
        outs.append(m(h, edges))
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(outs[0], dense_hop_diffusion(m, h, edges), rtol=1e-5, atol=1e-5)


def test_low_precision_falls_back_to_gather():
    gen = torch.Generator().manual_seed(12)
    edges = _random_graph(gen, 40, 200)
    torch.manual_seed(6)
    m = HopDiffusedAttention(16, heads=2, steps=2)
    h = torch.randn(40, 16)
    ref = m(h, edges)
    out = m.to(torch.bfloat16)(h.to(torch.bfloat16), edges)             # "auto": csr kernels are float32/64 only
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="backend"):
        HopDiffusedAttention(16, backend="dense")


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state")
def test_prepare_edges_gives_valid_csr():
    edges = torch.tensor([[3, 0, 2, 0, 1, 3, 3], [1, 1, 1, 1, 3, 3, 0]])      # duplicate 0 -> 1, self-loop 3 -> 3
    prepared = prepare_edges(edges, 4)
    assert prepared.tolist() == [[3, 0, 2, 3, 1], [0, 1, 1, 1, 3]]
    graph = EdgeGraph(prepared, 4)
    ones = torch.ones(graph.num_edges)
    for crow, col in ((graph.crow, graph.src), (graph.crow_t, graph.col_t)):   # sorted, distinct columns per row
        a = torch.sparse_csr_tensor(crow, col, ones, (4, 4), check_invariants=True)
        assert a.to_dense().sum() == 5
    values = torch.arange(5.0)
    torch.testing.assert_close(graph.matrix_t(values).to_dense(), graph.matrix(values).to_dense().t())


@pytest.mark.parametrize("backend", ["csr", "gather"])
def test_prepare_edges_empty_graph(backend):
    edges = prepare_edges(torch.zeros(2, 0, dtype=torch.long), 4, self_loops=False)
    assert edges.shape == (2, 0)
    m = HopDiffusedAttention(4, steps=2, backend=backend)
    h = torch.randn(4, 4, requires_grad=True)
    out = m(h, edges)
    torch.testing.assert_close(out, (1 + m.layers[0].theta[0]) * h)
    out.sum().backward()
    assert h.grad is not None


# ---------------------------------------------------------------- hop-aware variant


def test_hop_aware_encoding():
    enc = HopAwareEncoding(6, max_hop=2)
    assert enc.embedding.weight.shape == (4, 6)
    hop = torch.tensor([0, 1, 2, 5, -1, 3])
    assert enc.rows(hop).tolist() == [0, 1, 2, 2, 3, 2]
    h = torch.randn(6, 6)
    out = enc(h, hop)
    w = enc.embedding.weight
    torch.testing.assert_close(out, h + w[[0, 1, 2, 2, 3, 2]])
    out.sum().backward()
    assert enc.embedding.weight.grad[:, 0].tolist() == [1.0, 1.0, 3.0, 1.0]   # row use counts
    batched = enc(h.view(2, 3, 6), hop.view(2, 3))
    torch.testing.assert_close(batched.view(6, 6), out)


def _qformer(order: str, layers: int = 1) -> MMQFormer:
    torch.manual_seed(0)
    return MMQFormer(16, num_queries=4, heads=4, ffn_dim=32, layers=layers, order=order).eval()


@pytest.mark.parametrize("order", ["paper", "public"])
def test_qformer_shapes_and_gradients(order):
    m = _qformer(order, layers=2).train()
    text, image = torch.randn(3, 5, 16), torch.randn(3, 2, 16)
    out = m(text, torch.ones(3, 5, dtype=torch.bool), image, torch.ones(3, 2, dtype=torch.bool))
    assert out.shape == (3, 4, 16)
    out.pow(2).sum().backward()
    assert m.queries.grad is not None and m.queries.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize("order", ["paper", "public"])
def test_qformer_padding_invariance(order):
    m = _qformer(order)
    torch.manual_seed(1)
    text, image = torch.randn(2, 3, 16), torch.randn(2, 2, 16)
    base = m(text, None, image, None)
    garbage_t = torch.randn(2, 4, 16) * 1e4
    garbage_t[0, 1, 3] = float("nan")
    garbage_i = torch.randn(2, 3, 16) * 1e4
    garbage_i[1, 0, 0] = float("inf")
    text_p = torch.cat([text[:, :1], garbage_t[:, :2], text[:, 1:], garbage_t[:, 2:]], 1)   # pads interleaved
    text_m = torch.tensor([[True, False, False, True, True, False, False]] * 2)
    image_p = torch.cat([garbage_i, image], 1)
    image_m = torch.tensor([[False, False, False, True, True]] * 2)
    out = m(text_p, text_m, image_p, image_m)
    torch.testing.assert_close(out, base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(m(text_p, text_m.logical_not(), image_p, image_m).nan_to_num(), base)


@pytest.mark.parametrize("order", ["paper", "public"])
def test_qformer_missing_modalities(order):
    m = _qformer(order).train()
    torch.manual_seed(2)
    text, image = torch.randn(3, 4, 16), torch.randn(3, 2, 16)
    text_m = torch.tensor([[True] * 4, [False] * 4, [True, True, False, False]])
    image_m = torch.tensor([[False, False], [True, True], [True, False]])
    out = m(text, text_m, image, image_m)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    m.eval()
    out = m(text, text_m, image, image_m)
    # sample 0 has no image: same as running it without any image input; sample 1 has no text
    torch.testing.assert_close(out[0], m(text[:1], text_m[:1])[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1], m(None, None, image[1:2], image_m[1:2])[0], rtol=1e-5, atol=1e-5)
    assert m(text[:, :0], None, image, None).shape == (3, 4, 16)
    assert m(None, None, image, torch.zeros(3, 2, dtype=torch.bool)).isfinite().all()


def _attend(mha, q, kv):
    return mha(q, kv, kv, need_weights=False)[0]


def test_qformer_block_orders_match_written_out_maths():
    torch.manual_seed(3)
    text, image = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    for order in ("paper", "public"):
        m = _qformer(order)
        b = m.blocks[0]
        q = m.queries.unsqueeze(0).expand(2, -1, -1)
        if order == "paper":
            full = torch.cat([q, text], 1)
            q = b.norm1(q + _attend(b.self_attn, full, full)[:, :4])        # self-attention over [Q; T], Q part
            q = b.norm2(q + _attend(b.cross_attn, q, image))
        else:                                                                # public TranslatorLayer.forward
            q = b.norm1(q + _attend(b.self_attn, q, q))
            q = b.norm2(q + _attend(b.cross_attn, q, image))
            full = torch.cat([q, text], 1)
            q = _attend(b.self_attn, full, full)[:, :4]
        expected = b.norm3(q + b.ffn(q))
        torch.testing.assert_close(m(text, None, image, None), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_qformer("paper")(text, None, image), _qformer("public")(text, None, image))


def test_qformer_determinism():
    text = torch.randn(2, 3, 16)
    a, b = _qformer("paper"), _qformer("paper")
    assert torch.equal(a(text), b(text))
    with pytest.raises(ValueError):
        MMQFormer(16, 4, order="other")
    with pytest.raises(ValueError):
        a()
