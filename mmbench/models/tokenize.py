"""Modality tokenization for token-based KGC models (MyGO): each entity's text and images become
discrete tokens, duplicates are counted, and the k most frequent tokens per modality are kept.

Sources, in order of preference:
  text   tokens shipped with the dataset (BERT-uncased ids, e.g. DB15K-textual-v2.json) ->
         entity descriptions tokenized with the backbone's WordPiece tokenizer -> the dataset's own
         token vocabulary decoded to words and re-tokenized
  image  visual tokens shipped with the dataset plus their codebook (BEiT-v2 visual.pth) ->
         patch features (E, P, D) or image files through EfficientNet-Lite0, quantised with a k-means
         codebook built here
Results are cached on disk keyed by a hash of the inputs and parameters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from mmbench.api import EntityModalities
from mmbench.backbones import cached, image_encoder, load_image, text_embedding_table, text_tokenizer
from mmbench.data.kg import hash_modalities


@dataclass
class EntityTokens:
    """Top-k tokens per entity for one modality.

    ids:   (E, k) long; padded positions hold 0
    mask:  (E, k) bool; True where a real token sits (an entity without the modality has none)
    table: (V, D) float frozen embedding table the ids index (word embeddings or a codebook)
    source: how the tokens were obtained (recorded in results)
    """

    ids: torch.Tensor
    mask: torch.Tensor
    table: torch.Tensor
    source: str

    @property
    def coverage(self) -> float:
        return float(self.mask.any(1).float().mean()) if self.mask.numel() else 0.0


def top_k(lists: list[list[int]], k: int, drop: frozenset[int] = frozenset()) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entity: the k most frequent ids not in ``drop`` (ties: first occurrence first).

    returns ids (E, k) long and mask (E, k) bool
    """
    ids = torch.zeros(len(lists), k, dtype=torch.long)
    mask = torch.zeros(len(lists), k, dtype=torch.bool)
    for e, toks in enumerate(lists):
        best = [t for t, _ in Counter(t for t in toks if t not in drop).most_common(k)]
        if best:
            ids[e, : len(best)] = torch.tensor(best)
            mask[e, : len(best)] = True
    return ids, mask


def stopword_ids(tokenizer) -> frozenset[int]:
    """WordPiece ids of scikit-learn's English stop words that are single tokens."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    vocab = tokenizer.get_vocab()
    return frozenset(vocab[w] for w in ENGLISH_STOP_WORDS if w in vocab)


def text_tokens(m: EntityModalities, k: int, backbone: str = "minilm", keep_stopwords: bool = False,
                keep_special: bool = False) -> EntityTokens | None:
    """Top-k WordPiece tokens per entity, embedded by the backbone's frozen word-embedding table."""
    tok = text_tokenizer(backbone)
    table = text_embedding_table(backbone)
    drop = set()
    if not keep_special:
        drop |= set(tok.all_special_ids)
    if not keep_stopwords:
        drop |= stopword_ids(tok)
    bags = m.tokens.get("text")
    if bags is not None and bags.embeddings is None and bags.vocab is None and bags.vocab_size == len(tok):
        lists = [bags.of(e).tolist() for e in range(m.num_entities)]
        source = f"{bags.source}, {backbone} embeddings"
    elif m.texts is not None or (bags is not None and bags.vocab is not None):
        if m.texts is not None:
            texts = list(m.texts)
        else:
            texts = [" ".join(bags.vocab[i] for i in bags.of(e).tolist()) or None for e in range(m.num_entities)]

        def encode() -> list[list[int]]:
            return [tok(t, add_special_tokens=True)["input_ids"] if t else [] for t in texts]

        lists = cached("text-tokens", [backbone, hash_modalities(m), "texts"], encode)
        source = f"entity texts tokenized by {backbone}"
    else:
        return None
    ids, mask = top_k(lists, k, frozenset(drop))
    return EntityTokens(ids, mask, table, source + ("" if keep_stopwords else ", stop words removed"))


def kmeans(x: torch.Tensor, k: int, seed: int, iters: int = 25) -> torch.Tensor:
    """Codebook (k, D) by k-means++ initialisation and Lloyd iterations. x: (N, D) float."""
    g = torch.Generator().manual_seed(seed)
    k = min(k, len(x))
    centers = x[torch.randint(0, len(x), (1,), generator=g)]
    d2 = torch.cdist(x, centers).squeeze(1) ** 2
    for _ in range(1, k):
        nxt = x[torch.multinomial(d2 / d2.sum() if d2.sum() > 0 else torch.ones_like(d2), 1, generator=g)]
        centers = torch.cat([centers, nxt])
        d2 = torch.minimum(d2, torch.cdist(x, nxt).squeeze(1) ** 2)
    for _ in range(iters):
        assign = assign_codes(x, centers)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).clamp_min(1).unsqueeze(1)
        new = torch.where(counts > 0, sums / counts, centers)
        if torch.allclose(new, centers):
            break
        centers = new
    return centers


def assign_codes(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Nearest code per row: x (N, D) -> (N,) long."""
    return torch.cat([torch.cdist(x[i:i + chunk], codebook).argmin(1) for i in range(0, len(x), chunk)]) \
        if len(x) else torch.zeros(0, dtype=torch.long)


def visual_tokens(m: EntityModalities, k: int, num_codes: int = 512, seed: int = 0,
                  max_fit_patches: int = 100_000, image_codes: int = 0) -> EntityTokens | None:
    """Top-k visual tokens per entity from shipped tokens, patch features, or image files.

    With ``image_codes`` > 0 (patch features or image files only), each image also contributes one
    image-level token: its mean patch feature quantised with a second k-means codebook of that size
    (ids follow the patch codes; the returned table stacks both codebooks).
    """
    bags = m.tokens.get("image")
    if bags is not None and bags.embeddings is not None:
        lists = [bags.of(e).tolist() for e in range(m.num_entities)]
        ids, mask = top_k(lists, k)
        return EntityTokens(ids, mask, bags.embeddings, f"{bags.source} with its codebook")
    feats = m.features.get("image")
    if feats is not None and feats.values.dim() == 3:
        patches = feats.values.float()                                    # (E, P, D)
        present = feats.present.bool()
        source = f"k-means ({num_codes} codes) over {feats.source}"
        per_image = [patches[e:e + 1] if present[e] else patches[e:e + 1][:0] for e in range(m.num_entities)]
    elif m.image_paths is not None and any(m.image_paths):
        per_entity = cached("image-patches", ["efficientnet-lite0", repr(m.image_paths)],
                            lambda: _encode_images(m.image_paths))
        per_image = [p.view(-1, 49, p.shape[-1]) for p in per_entity]    # (n_images, 49, 1280) each
        source = f"k-means ({num_codes} codes) over EfficientNet-Lite0 7x7 patch features"
    else:
        return None

    def quantise():
        g = torch.Generator().manual_seed(seed)
        pool = torch.cat([p.flatten(0, 1) for p in per_image if len(p)])
        codebook = kmeans(pool[torch.randperm(len(pool), generator=g)[:max_fit_patches]], num_codes, seed)
        lists = [assign_codes(p.flatten(0, 1), codebook).tolist() for p in per_image]
        if image_codes > 0:
            means = [p.mean(1) for p in per_image]                          # (n_images, D) per entity
            image_book = kmeans(torch.cat(means), image_codes, seed + 1)
            lists = [codes + (assign_codes(x, image_book) + len(codebook)).tolist()
                     for codes, x in zip(lists, means, strict=True)]
            codebook = torch.cat([codebook, image_book])
        return codebook, lists

    key = [hash_modalities(m), num_codes, seed, max_fit_patches] + ([image_codes] if image_codes > 0 else [])
    codebook, lists = cached("visual-tokens", key, quantise)
    if image_codes > 0:
        source += f", plus one image-level token per image (k-means, {image_codes} codes, over mean patch features)"
    ids, mask = top_k(lists, k)
    return EntityTokens(ids, mask, codebook, source)


def _encode_images(image_paths) -> list[torch.Tensor]:
    """Per entity: (n_images * 49, 1280) EfficientNet patch features; unreadable files are skipped."""
    enc = image_encoder("efficientnet-lite0")
    out = []
    for files in image_paths:
        imgs = [x for x in (load_image(f) for f in files) if x is not None]
        if imgs:
            out.append(enc(torch.stack(imgs)).reshape(-1, 1280))
        else:
            out.append(torch.zeros(0, 1280))
    return out
