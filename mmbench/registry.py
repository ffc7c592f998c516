"""The model registry.

Three ways in:
1. ``@register_model("name")`` on an adapter class inside mmbench/ or baselines/;
2. the entry-point group ``mmbench.models`` for installed packages
   (``[project.entry-points."mmbench.models"] mymodel = "mypkg.adapter:MyModel"``);
3. ``path/to/file.py:ClassName`` for a file that is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path

from mmbench.api import ModelAdapter
from mmbench.errors import ConfigError, closest
from mmbench.io import file_sha256, sha256_hex

_MODELS: dict[str, type[ModelAdapter]] = {}
# one name may serve several task families (e.g. graph4mm: generation and classification): (name, family) -> class
_BY_FAMILY: dict[tuple[str, str], type[ModelAdapter]] = {}
_BUILTIN_MODULES = ("baselines.kge", "baselines.one_to_all", "baselines.mm_concat", "mmbench.models.mygo",
                    "baselines.gnn", "baselines.lm_cls", "baselines.lm_gen", "baselines.mmgl",
                    "mmbench.models.graph4mm", "mmbench.models.vwlmm", "baselines.labelprop", "baselines.linear",
                    "baselines.copy_context")
_loaded = False


def register_model(name: str):
    """Class decorator: make an adapter available as ``--model name``."""

    def deco(cls: type[ModelAdapter]) -> type[ModelAdapter]:
        if not (inspect.isclass(cls) and issubclass(cls, ModelAdapter)):
            raise TypeError(f"@register_model({name!r}) must decorate a ModelAdapter subclass")
        key = (name, cls.family)
        if key in _BY_FAMILY and _BY_FAMILY[key] is not cls:
            raise ValueError(f"model name {name!r} is already registered for the {cls.family or 'family-less'} "
                             f"family by {_BY_FAMILY[key].__module__}")
        cls.name = name
        _BY_FAMILY[key] = cls
        _MODELS.setdefault(name, cls)
        return cls

    return deco


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    for ep in entry_points(group="mmbench.models"):
        if ep.name in _MODELS:
            continue
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001  (a broken plugin must not break the others)
            print(f"warning: entry point mmbench.models:{ep.name} ({ep.value}) failed to load: {e}",
                  file=sys.stderr)
            continue
        register_model(ep.name)(cls)


def all_models() -> dict[str, type[ModelAdapter]]:
    _load_builtins()
    return dict(sorted(_MODELS.items()))


def _from_file(spec: str) -> type[ModelAdapter]:
    path_str, _, cls_name = spec.rpartition(":")
    path = Path(path_str)
    if not path.exists():
        raise ConfigError(f"--model {spec}: file {path} does not exist")
    mod_name = f"mmbench_user_{path.stem}_{sha256_hex(str(path.resolve()))[:10]}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"--model {spec}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    module_spec.loader.exec_module(module)
    cls = getattr(module, cls_name, None)
    if cls is None:
        names = [n for n, o in vars(module).items() if inspect.isclass(o) and issubclass(o, ModelAdapter)]
        raise ConfigError(f"--model {spec}: {path} has no class {cls_name!r}.{closest(cls_name, names)}")
    if not (inspect.isclass(cls) and issubclass(cls, ModelAdapter)):
        raise ConfigError(f"--model {spec}: {cls_name} must subclass an mmbench adapter base "
                          f"(mmbench.api.KGCModel for knowledge-graph completion)")
    if "name" not in cls.__dict__:  # not registered itself (a subclass of a builtin inherits its name)
        cls.name = f"{path.stem}:{cls_name}"
    # the run key covers the adapter's source, so editing the file never reuses stale results
    cls.source_sha256 = file_sha256(path)
    return cls


def model_families(name: str) -> list[str]:
    """The task families a registered name serves (in registration order)."""
    _load_builtins()
    return [fam for (n, fam) in _BY_FAMILY if n == name]


def get_model(name: str, family: str | None = None) -> type[ModelAdapter]:
    """A registered model by name (its class for ``family`` when the name serves several), or
    ``path/to/file.py:ClassName``."""
    if ".py:" in name:
        return _from_file(name)
    models = all_models()
    if name not in models:
        raise ConfigError(f"unknown model {name!r}.{closest(name, models)} "
                          f"Run `mmbench list models` to see the registered models.")
    if family is not None and (name, family) in _BY_FAMILY:
        return _BY_FAMILY[(name, family)]
    return models[name]
