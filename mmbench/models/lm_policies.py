"""What trains in an LM: the ``trainable`` policies of mmbench's LM adapters.

  ``all``        full fine-tuning
  ``none``       the LM is frozen (only the adapter's own modules train)
  ``last:N``     the last N decoder layers and the final norm (N >= 1)
  ``lora:...``   LoRA (Hu et al. 2021) through peft: ``lora:r=8,alpha=16[,targets=q_proj+v_proj][,dropout=0.05]``;
                 without ``targets`` peft's default modules for the architecture (LLaMA/OPT: q_proj, v_proj)
  ``prefix:...`` prefix tuning (Li & Liang 2021) through peft: ``prefix:n=10`` virtual key/value tokens per layer

``prepare_lm`` applies a policy to a (private copy of an) LM and returns the model to use (a peft wrapper for
LoRA and prefix tuning) with its trainable parameters. Those stay in fp32 whatever the LM's dtype; the
selection checkpoint (``lm_utils.trainable_state``) holds exactly them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmbench.errors import ConfigError
from mmbench.models.lm_forward import set_compute_dtype

TRAINABLE_HELP = ("'all', 'none', 'last:N' (N >= 1), 'lora:r=8,alpha=16[,targets=q_proj+v_proj][,dropout=0.05]' "
                  "or 'prefix:n=10'")


@dataclass(frozen=True)
class TrainablePolicy:
    kind: str                                 # all | none | last | lora | prefix
    layers: int = 0                           # last:N
    r: int = 8                                # lora rank
    alpha: float = 16.0                       # lora scaling numerator (scale = alpha / r)
    targets: tuple[str, ...] | None = None    # lora target module names (None: peft's default)
    dropout: float = 0.0                      # lora dropout
    tokens: int = 10                          # prefix: virtual tokens

    @property
    def uses_peft(self) -> bool:
        return self.kind in ("lora", "prefix")


def _options(policy: str, body: str, allowed: dict[str, type]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in filter(None, (x.strip() for x in body.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            raise ConfigError(f"trainable={policy!r}: unknown option {item!r}; expected {TRAINABLE_HELP}")
        try:
            out[key] = tuple(value.split("+")) if allowed[key] is tuple else allowed[key](value)
        except ValueError:
            raise ConfigError(f"trainable={policy!r}: {key} must be a {allowed[key].__name__}, got {value!r}") from None
    return out


def parse_trainable(policy: str) -> TrainablePolicy:
    """``"last:4"`` -> TrainablePolicy("last", layers=4); refuses anything else than TRAINABLE_HELP."""
    p = str(policy).strip()
    low = p.lower()
    if low in ("all", "none"):
        return TrainablePolicy(low)
    kind, _, body = p.partition(":")
    kind = kind.lower()
    if kind == "last":
        try:
            n = int(body)
        except ValueError:
            n = 0
        if n >= 1:
            return TrainablePolicy("last", layers=n)
    elif kind == "lora":
        o = _options(p, body, {"r": int, "alpha": float, "targets": tuple, "dropout": float})
        pol = TrainablePolicy("lora", r=int(o.get("r", 8)), alpha=float(o.get("alpha", 16.0)),
                              targets=o.get("targets"), dropout=float(o.get("dropout", 0.0)))
        if pol.r < 1 or pol.alpha <= 0 or not 0 <= pol.dropout < 1:
            raise ConfigError(f"trainable={policy!r}: need r >= 1, alpha > 0 and 0 <= dropout < 1")
        return pol
    elif kind == "prefix":
        o = _options(p, body, {"n": int})
        pol = TrainablePolicy("prefix", tokens=int(o.get("n", 10)))
        if pol.tokens < 1:
            raise ConfigError(f"trainable={policy!r}: n must be at least 1")
        return pol
    raise ConfigError(f"trainable={policy!r}: expected {TRAINABLE_HELP}")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    dec = model.get_decoder() if hasattr(model, "get_decoder") else model
    for holder in (dec, getattr(dec, "decoder", None), getattr(model, "transformer", None)):
        for name in ("layers", "h", "block", "blocks"):
            layers = getattr(holder, name, None) if holder is not None else None
            if isinstance(layers, nn.ModuleList):
                return layers
    raise ConfigError(f"cannot find the decoder layers of {type(model).__name__} for trainable='last:N'")


def final_norm(model: nn.Module) -> nn.Module | None:
    dec = model.get_decoder() if hasattr(model, "get_decoder") else model
    for holder in (dec, getattr(dec, "decoder", None), getattr(model, "transformer", None)):
        for name in ("norm", "final_layer_norm", "ln_f", "final_layernorm"):
            m = getattr(holder, name, None) if holder is not None else None
            if isinstance(m, nn.Module):
                return m
    return None


def apply_trainable(model: nn.Module, policy: str) -> list[nn.Parameter]:
    """In place, for ``all`` / ``none`` / ``last:N``: set ``requires_grad``; returns the trainable parameters."""
    pol = parse_trainable(policy)
    if pol.uses_peft:
        raise ConfigError(f"trainable={policy!r} wraps the model: use prepare_lm")
    for p in model.parameters():
        p.requires_grad_(pol.kind == "all")
    if pol.kind == "last":
        for layer in list(decoder_layers(model))[-pol.layers:]:
            layer.requires_grad_(True)
        norm = final_norm(model)
        if norm is not None:
            norm.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _peft_wrap(model: nn.Module, pol: TrainablePolicy) -> nn.Module:
    from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

    if pol.kind == "lora":
        cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=pol.r, lora_alpha=pol.alpha, lora_dropout=pol.dropout,
                         target_modules=list(pol.targets) if pol.targets else None)
    else:
        cfg = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=pol.tokens)
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:  # e.g. LoRA targets that are not in this architecture
        raise ConfigError(f"trainable={pol.kind}: peft refused this model ({e})") from None


def prepare_lm(model: nn.Module, policy: str, dtype: torch.dtype = torch.float32,
               seed: int | None = None) -> tuple[nn.Module, list[nn.Parameter]]:
    """Apply ``policy`` to ``model`` (a private copy: it is changed) and record ``dtype`` for its forward passes.

    -> (the model to call: ``model`` itself or its peft wrapper, its trainable parameters, all fp32).
    ``seed`` fixes the initialisation of LoRA / prefix weights.
    """
    pol = parse_trainable(policy)
    if pol.uses_peft:
        model.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = _peft_wrap(model, pol)
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = apply_trainable(model, policy)
    for p in params:
        if p.dtype != torch.float32:
            p.data = p.data.float()
    set_compute_dtype(model, dtype)
    return model, params


@dataclass
class LMParts:
    """A causal LM ready for an adapter: the model to call, its tokenizer, the trainable parameters (fp32),
    the backbone's identity (for the record) and the compute dtype."""

    model: nn.Module
    tokenizer: object
    params: list[nn.Parameter]
    identity: dict[str, object]
    dtype: torch.dtype


def build_lm(name: str, trainable: str, device: torch.device, dtype: str = "auto", seed: int | None = None) -> LMParts:
    """A private copy of LM ``name`` on ``device`` in ``dtype`` (``auto``: fp32 on the CPU, bf16 on a GPU that
    supports it), with the ``trainable`` policy applied."""
    from mmbench.backbones import load_causal_lm
    from mmbench.devices import resolve_dtype

    parse_trainable(trainable)  # refuse a bad policy before the LM loads
    dt = resolve_dtype(dtype, device)
    lm, tok, ident = load_causal_lm(name, device, dt)
    model, params = prepare_lm(lm, trainable, dt, seed)
    return LMParts(model, tok, params, ident.as_dict(), dt)
