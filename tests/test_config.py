"""Model configs: ``--set`` parsing, presets, unknown keys, type coercion."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mmbench.cli import parse_seeds
from mmbench.config import build_config, config_to_dict, parse_overrides
from mmbench.errors import ConfigError


@dataclass
class Cfg:
    epochs: int = 10
    lr: float = 0.01
    use_text: bool = True
    loss: str = "ce"
    limit: int | None = None
    tags: list = None


def test_parse_overrides_values():
    out = parse_overrides(["lr=1e-3", "use_text=false", "epochs=2", "loss=bce", "x.y = [1, 2]", "a=b=c",
                           "limit=null", "ratio=0.5"])
    # '1e-3' stays a string here (YAML 1.1); build_config turns it into a float for float fields
    assert out == {"lr": "1e-3", "use_text": False, "epochs": 2, "loss": "bce", "x.y": [1, 2], "a": "b=c",
                   "limit": None, "ratio": 0.5}
    assert isinstance(out["ratio"], float) and isinstance(out["epochs"], int)
    assert out["use_text"] is False


def test_parse_overrides_needs_key_value():
    with pytest.raises(ConfigError, match="--set 'x': expected key=value, e.g. --set lr=0.001"):
        parse_overrides(["lr=0.1", "x"])


def test_build_config_defaults_presets_overrides():
    presets = {"nations": {"epochs": 50, "lr": 0.05}}
    assert build_config(Cfg, "umls", presets, {}, "model m") == Cfg()
    c = build_config(Cfg, "nations", presets, {"lr": 1}, "model m")
    assert c == Cfg(epochs=50, lr=1.0)  # preset, then --set wins
    assert isinstance(c.lr, float)
    assert config_to_dict(c)["epochs"] == 50
    c = build_config(Cfg, None, presets, parse_overrides(["limit=3", "loss=42", "epochs=4.0"]), "model m")
    assert c.limit == 3 and c.loss == "42" and c.epochs == 4 and isinstance(c.epochs, int)
    assert build_config(Cfg, None, {}, {"limit": None}, "model m").limit is None


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError) as e:
        build_config(Cfg, None, {}, {"epoch": 3}, "model distmult")
    msg = str(e.value)
    assert "model distmult: unknown config key 'epoch' (from --set). Did you mean 'epochs'?" in msg
    assert "Known keys: epochs, limit, loss, lr, tags, use_text" in msg


def test_unknown_key_in_preset_names_the_preset():
    with pytest.raises(ConfigError, match="unknown config key 'lrate' \\(from preset\\)"):
        build_config(Cfg, "nations", {"nations": {"lrate": 0.1}}, {}, "model m")


@pytest.mark.parametrize("pair, needle", [
    ("epochs=abc", "model m: epochs must be an integer, got 'abc'"),
    ("epochs=2.5", "epochs must be an integer, got 2.5"),
    ("epochs=true", "epochs must be an integer, got True"),
    ("lr=fast", "lr must be a number, got 'fast'"),
    ("lr=false", "lr must be a number, got False"),
    ("use_text=1", "use_text must be true or false, got 1"),
    ("use_text=maybe", "use_text must be true or false, got 'maybe'"),
    ("limit=x", "limit must be an integer, got 'x'"),
])
def test_type_errors(pair, needle):
    with pytest.raises(ConfigError) as e:
        build_config(Cfg, None, {}, parse_overrides([pair]), "model m")
    assert needle in str(e.value)


def test_real_adapter_configs():
    from mmbench.registry import get_model

    dm = get_model("distmult")
    c = build_config(dm.Config, "nations", dm.presets, parse_overrides(["epochs=2", "dim=16"]), "model distmult")
    assert (c.epochs, c.dim, c.eval_every) == (2, 16, 10)
    mm = get_model("mm-concat")
    c = build_config(mm.Config, "db15k", mm.presets, parse_overrides(["use_text=false"]), "model mm-concat")
    assert c.use_text is False and c.use_image is True


@pytest.mark.parametrize("text, seeds", [("0", [0]), ("0,2", [0, 2]), ("0-2", [0, 1, 2]), ("1,3-4", [1, 3, 4])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


def test_parse_seeds_error():
    with pytest.raises(ConfigError, match="--seed 'a': expected an integer"):
        parse_seeds("a")


def test_exponent_strings_become_floats_only_for_float_fields():
    from dataclasses import dataclass

    @dataclass
    class C:
        lr: float = 0.1
        name: str = "x"

    cfg = build_config(C, None, {}, parse_overrides(["lr=1e-3", "name=1e5"]), "model m")
    assert cfg.lr == 0.001
    assert cfg.name == "1e5"
