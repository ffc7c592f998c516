"""Sample assembly speed: ``MultimodalGraph.sample`` (CSR adjacency built once, ``mmbench.data.subgraph``) vs the
previous implementation (PyG ``to_undirected`` + ``k_hop_subgraph`` on the whole graph per call, then a BFS over
all edges for the hops and a scan of all edges for the induced ones).

Graph: ``--nodes`` nodes (100,000) and ``--edges`` uniformly random directed edges (1,000,000), seeded; every node
has a text. Both implementations assemble ``--hops``-hop samples of at most ``--max-nodes`` nodes for targets drawn
with the same seed: the new code for all ``--targets`` (10,000), the previous one for the first ``--old-targets``
(20) only, whose time is extrapolated linearly to ``--targets``. Both are measured in the same run, one thread,
and the script checks that the two give identical samples on the targets both assembled.

    OMP_NUM_THREADS=1 .venv/bin/python bench/sample_assembly.py [--targets 10000] [--old-targets 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from mmbench.api import GraphSample, SampleNode
from mmbench.data.graph import MultimodalGraph


def build_graph(nodes: int, edges: int, seed: int) -> MultimodalGraph:
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, nodes, (2, edges), generator=gen)
    return MultimodalGraph(num_nodes=nodes, texts=tuple(f"node {i}" for i in range(nodes)),
                           images=tuple(f"{i}.jpg" if i % 2 else None for i in range(nodes)),
                           kinds=("node",) * nodes, edge_index=ei,
                           edge_type=torch.randint(0, 3, (edges,), generator=gen))


def previous_sample(g: MultimodalGraph, node: int, k: int, max_nodes: int) -> GraphSample:
    """The code ``MultimodalGraph.k_hop``/``sample`` ran before the CSR adjacency (plus ``node=``)."""
    from torch_geometric.utils import k_hop_subgraph, to_undirected

    ei = to_undirected(g.edge_index, num_nodes=g.num_nodes) if g.edge_index.numel() else g.edge_index
    subset, _, _, _ = k_hop_subgraph(node, k, ei, relabel_nodes=False, num_nodes=g.num_nodes)
    subset = torch.cat([torch.tensor([node]), subset[subset != node]])
    n = int(max(int(subset.max()), int(ei.max()) if ei.numel() else 0)) + 1  # the former _bfs_hops
    dist = torch.full((n,), k + 1, dtype=torch.long)
    dist[node] = 0
    frontier = torch.zeros(n, dtype=torch.bool)
    frontier[node] = True
    for h in range(1, k + 1):
        nxt = torch.zeros(n, dtype=torch.bool)
        nxt[ei[1][frontier[ei[0]]]] = True
        nxt &= dist > h
        dist[nxt] = h
        frontier = nxt
    hops = dist[subset]
    order = torch.argsort(hops * (g.num_nodes + 1) + torch.arange(len(subset)), stable=True)
    subset, hops = subset[order], hops[order]
    pos = torch.full((g.num_nodes,), -1, dtype=torch.long)
    pos[subset] = torch.arange(len(subset))
    keep = (pos[g.edge_index[0]] >= 0) & (pos[g.edge_index[1]] >= 0)
    sub_ei, et = pos[g.edge_index[:, keep]], g.edge_type[keep]
    if len(subset) > max_nodes:
        subset, hops = subset[:max_nodes], hops[:max_nodes]
        keep = (sub_ei[0] < max_nodes) & (sub_ei[1] < max_nodes)
        sub_ei, et = sub_ei[:, keep], et[keep]
    nodes = tuple(SampleNode(text=g.texts[v], image=g.images[v], kind=g.kinds[v], hop=int(h), node=v)
                  for v, h in zip(subset.tolist(), hops.tolist(), strict=True))
    return GraphSample(id=str(node), nodes=nodes, edge_index=sub_ei, edge_type=et, edge_type_names=g.edge_type_names)


def same(a: GraphSample, b: GraphSample) -> bool:
    return (a.id == b.id and a.nodes == b.nodes and torch.equal(a.edge_index, b.edge_index)
            and torch.equal(a.edge_type, b.edge_type))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--old-targets", type=int, default=20)
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--max-nodes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    g = build_graph(args.nodes, args.edges, args.seed)
    targets = torch.randint(0, args.nodes, (args.targets,),
                            generator=torch.Generator().manual_seed(args.seed + 1)).tolist()
    old_targets = targets[: args.old_targets]

    t0 = time.perf_counter()
    g.adjacency  # noqa: B018 (built once per graph, on first use)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = [g.sample(v, args.hops, args.max_nodes) for v in targets]
    t_new = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = [previous_sample(g, v, args.hops, args.max_nodes) for v in old_targets]
    t_old = time.perf_counter() - t0
    t_old_all = t_old / len(old_targets) * args.targets
    identical = all(same(a, b) for a, b in zip(new, old, strict=False))
    t_new_all = t_build + t_new

    print(f"graph: {args.nodes:,} nodes, {args.edges:,} random directed edges (seed {args.seed}); "
          f"{args.hops}-hop samples, at most {args.max_nodes} nodes; {torch.get_num_threads()} torch thread(s); "
          f"mean sample size {sum(len(s.nodes) for s in new) / len(new):.1f} nodes, "
          f"{sum(s.edge_index.shape[1] for s in new) / len(new):.1f} edges")
    rows = [("new: CSR adjacency build (once per graph)", "measured", t_build, None),
            (f"new: sample() x {args.targets:,}", "measured", t_new, t_new / args.targets),
            (f"new: total for {args.targets:,}", "measured", t_new_all, None),
            (f"previous: sample() x {len(old_targets)}", "measured", t_old, t_old / len(old_targets)),
            (f"previous: sample() x {args.targets:,}", f"extrapolated x{args.targets / len(old_targets):g}",
             t_old_all, None)]
    print(f"{'':48} {'':20} {'seconds':>10} {'ms/sample':>10}")
    for name, how, sec, per in rows:
        print(f"{name:48} {how:20} {sec:10.3f} {'' if per is None else f'{per * 1e3:10.3f}':>10}")
    print(f"ratio previous/new for {args.targets:,} samples (new incl. the build): {t_old_all / t_new_all:,.0f}x; "
          f"per sample: {(t_old / len(old_targets)) / (t_new / args.targets):,.0f}x")
    print(f"identical samples on the {len(old_targets)} targets both assembled: {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
