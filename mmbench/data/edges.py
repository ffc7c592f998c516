"""Edge-list views for graph models: parallel edges merged, per-type de-duplication, mean adjacency.

A ``MultimodalGraph`` stores directed rows ``edge_index`` (2, M) with one type each (``edge_type`` (M,),
indices into ``edge_type_names``); undirected loaders store both directions. Two rows with the same
(source, target) but different types are *parallel edges*: a folder graph may link a pair of nodes by a
``text-text`` and a ``text-image`` edge. A model that ignores edge types would count such a pair twice
(GCN's degree normalisation, SAGE's neighbour mean and GAT's softmax all see two messages), so those models
take ``merge_parallel``; a model with one relation per type (R-GCN) takes ``dedupe_typed``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def _first_occurrence(key: torch.Tensor) -> torch.Tensor:
    """key (M,) long -> (K,) positions of the first row of each distinct key, in stored order."""
    if not key.numel():
        return torch.zeros(0, dtype=torch.long)
    uniq, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((uniq.numel(),), key.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(key.numel()), reduce="amin")
    return first.sort().values


def merge_parallel(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, int]:
    """edge_index (2, M) -> ((2, K) rows with every (source, target) pair once, the number of rows dropped).

    The first stored row of each pair is kept and the stored order is preserved, so a graph without
    parallel edges comes back unchanged (same rows, same order: the same floating-point sums). Direction is
    kept as stored; self-loops are left as they are (GCNConv and GATConv add their own, once).
    """
    ei = edge_index.long()
    keep = _first_occurrence(ei[0] * num_nodes + ei[1])
    return ei[:, keep], int(ei.shape[1] - keep.numel())


def dedupe_typed(edge_index: torch.Tensor, edge_type: torch.Tensor, num_nodes: int,
                 num_types: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(2, M), (M,) -> ((2, K), (K,), rows dropped): each (source, target, type) triple once, stored order.

    Parallel edges of *different* types stay (they are different relations); only exact repeats go.
    """
    ei, et = edge_index.long(), edge_type.long()
    keep = _first_occurrence((ei[0] * num_nodes + ei[1]) * max(1, num_types) + et)
    return ei[:, keep], et[keep], int(ei.shape[1] - keep.numel())


def mean_adjacency(edge_index: torch.Tensor, num_nodes: int) -> sp.csr_matrix:
    """edge_index (2, M) -> P (N, N) float32 CSR, ``P = D^-1 A``: row v averages v's neighbours.

    ``A`` is the undirected 0/1 adjacency: both directions of every stored row, parallel edges (any types)
    merged, self-loops dropped. A node without neighbours has an empty row (its mean is the zero vector).
    """
    ei = edge_index.long()
    ei = ei[:, ei[0] != ei[1]]
    both = torch.cat([ei, ei.flip(0)], dim=1).numpy()
    a = sp.csr_matrix((np.ones(both.shape[1], dtype=np.float32), (both[0], both[1])), shape=(num_nodes, num_nodes))
    a.sum_duplicates()
    a.data[:] = 1.0                                       # merged: a pair counts once whatever its types
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0).astype(np.float32)
    return sp.csr_matrix(sp.diags(inv) @ a, dtype=np.float32)
