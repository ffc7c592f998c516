"""Per-target input assembly for WikiWeb2M sections (the Graph4MM/MMGL neighbour view; rules in
``mmbench.data.wikiweb``), beside the generic sample assembly of ``mmbench.data.subgraph``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmbench.api import GraphSample, SampleNode
from mmbench.data.graph import MultimodalGraph
from mmbench.data.subgraph import bfs_edge_list
from mmbench.data.wikiweb_pages import _norm


@dataclass
class _PageNodes:
    page_id: int
    page_node: int
    sections: list[int]
    images: list[int | None]  # image node per section
    edges: list[tuple[int, int, int]]  # global (u, v, type), both directions


class Assembler:
    """``assemble(node) -> GraphSample`` for a section node (see the module docstring)."""

    def __init__(self, graph: MultimodalGraph, pages: list[_PageNodes], where: dict[int, tuple[int, int]],
                 params: dict[str, Any]):
        self.graph, self.pages, self.where, self.p = graph, pages, where, params
        # context_targets: scrub -- the valid/test target sentences never enter any sample's context
        self.held = {int(v) for s in ("valid", "test") for v in graph.splits.get(s, torch.zeros(0, dtype=torch.long))}

    def __call__(self, node: int) -> GraphSample:
        if node not in self.where:
            raise ValueError(f"node {node} is not a section node of the WikiWeb2M graph")
        g, sidx = self.where[node]
        page = self.pages[g]
        G, p = self.graph, self.p
        answer = G.targets[node] if G.targets is not None else None
        cut = [answer] if p["scrub_target_sentence"] and answer else []
        scrub_held = p["context_targets"] == "scrub"
        if scrub_held:
            cut += [G.targets[sn] for sn in page.sections if sn in self.held and G.targets[sn]]
        budget = [p["max_sample_chars"]]

        def clip(text: str | None) -> str | None:
            if text is None:
                return None
            for sentence in cut:
                if sentence in text:
                    text = _norm(text.replace(sentence, " "))
            t = text[:min(p["max_node_chars"], budget[0])]
            budget[0] -= len(t)
            return t

        chosen: list[tuple[int, str | None]] = [(node, clip(G.texts[node] or ""))]
        text_left, image_left = p["max_text_neighbors"], p["max_image_neighbors"]

        def offer_text_node(v: int, text: str) -> None:
            nonlocal text_left
            if text_left > 0 and budget[0] > 0:
                chosen.append((v, clip(text)))
                text_left -= 1

        def offer_image_node(v: int | None) -> None:
            nonlocal text_left, image_left
            if v is None:
                return
            has_image = G.images[v] is not None
            caption = G.texts[v]
            if has_image:
                if image_left <= 0:
                    return
                image_left -= 1
                if caption and text_left > 0 and budget[0] > 0:
                    text_left -= 1
                    chosen.append((v, clip(caption)))
                else:
                    chosen.append((v, None))
            elif caption:
                offer_text_node(v, caption)

        offer_text_node(page.page_node, G.texts[page.page_node] or "")
        offer_image_node(page.images[sidx])
        for i, sn in enumerate(page.sections):
            if i == sidx:
                continue
            if text_left <= 0 and image_left <= 0:
                break
            first, rest = G.targets[sn] or "", G.texts[sn] or ""
            if scrub_held and sn in self.held:
                first = ""  # another held-out sample's answer: not context under context_targets: scrub
            offer_text_node(sn, f"{first}, {rest}" if first and rest else first or rest)
            offer_image_node(page.images[i])

        ids = [v for v, _ in chosen]
        pos = {v: i for i, v in enumerate(ids)}
        hops = self._hops(page, node)
        nodes = tuple(SampleNode(text=t, image=G.images[v], kind=G.kinds[v], hop=hops.get(v, -1), node=v)
                      for v, t in chosen)
        local = [(pos[u], pos[v], t) for u, v, t in page.edges if u in pos and v in pos]
        edge_index = torch.tensor([[a for a, _, _ in local], [b for _, b, _ in local]], dtype=torch.long).reshape(2, -1)
        if edge_index.numel():
            assert int(edge_index.max()) < len(nodes) and int(edge_index.min()) >= 0, "edge index out of range"
        return GraphSample(id=f"{page.page_id}_{sidx}", nodes=nodes, edge_index=edge_index,
                           edge_type=torch.tensor([t for _, _, t in local], dtype=torch.long),
                           edge_type_names=G.edge_type_names)

    @staticmethod
    def _hops(page: _PageNodes, source: int) -> dict[int, int]:
        """BFS distance from ``source`` over the page's edges (stored both ways, so following them both ways
        changes nothing); {global node id: hop} for the nodes reachable from ``source``."""
        ei = np.array([[u for u, _, _ in page.edges], [v for _, v, _ in page.edges]], dtype=np.int64)
        return bfs_edge_list(ei, source)
