"""Model configs: ``--set`` parsing, presets, unknown keys, type coercion."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from mmbench.config import build_config, config_to_dict, parse_overrides, parse_seeds
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


@pytest.mark.parametrize("text, message", [
    ("a", "--seed 'a': expected a seed >= 0"),
    ("3-1", "the range 3-1 is reversed; write 1-3"),
    ("-1", "seeds must be >= 0"),
    ("0,-2", "seeds must be >= 0"),
    ("", "expected a seed >= 0"),
    ("0,1,0-2", "listed twice"),
])
def test_parse_seeds_error(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_seeds(text)


def test_cli_refuses_bad_seeds_before_running(capsys):
    from mmbench.cli import main

    assert main(["eval", "--model", "distmult", "--task", "nations", "--seed", "3-1"]) != 0
    assert "reversed" in capsys.readouterr().err
    assert main(["sweep", "--models", "distmult", "--tasks", "nations", "--seeds", "-1"]) != 0
    assert "--seeds '-1': seeds must be >= 0" in capsys.readouterr().err


def test_sweep_file_refuses_bad_seeds(tmp_path):
    from mmbench.sweep import load_sweep_file

    path = tmp_path / "s.yaml"
    path.write_text("tasks: [nations]\nseeds: 0-2\nmodels:\n  distmult: {seeds: []}\n")
    with pytest.raises(ConfigError, match=r"models\.distmult\.seeds '': expected a seed"):
        load_sweep_file(path)


@pytest.mark.parametrize("model, pair, message", [
    ("distmult", "epochs=-5", "epochs=-5 is out of range: expected a value in [0, inf)"),
    ("distmult", "lr=-1", "lr=-1.0 is out of range: expected a value in (0, inf)"),
    ("distmult", "lr=0", "lr=0.0 is out of range"),
    ("distmult", "dim=0", "dim=0 is out of range: expected a value in [1, inf)"),
    ("distmult", "input_dropout=1.0", "input_dropout=1.0 is out of range: expected a value in [0, 1)"),
    ("gcn", "dropout=-0.1", "dropout=-0.1 is out of range"),
    ("mygo", "tucker_dropouts=[0.3, 1.2, 0.1]", "tucker_dropouts=[0.3, 1.2, 0.1] is out of range"),
    ("graph4mm", "alpha=0", "alpha=0.0 is out of range: expected a value in (0, 1]"),
])
def test_config_ranges_refused_naming_the_key(model, pair, message):
    from mmbench.registry import get_model

    cls = get_model(model)
    with pytest.raises(ConfigError, match=re.escape(f"model {model} (--set): {message}")):
        build_config(cls.Config, None, cls.presets, parse_overrides([pair]), f"model {model}")


def test_every_builtin_default_and_preset_is_in_range():
    import dataclasses

    from mmbench.config import _check_range
    from mmbench.registry import all_models, get_model, model_families

    for name in all_models():
        for family in model_families(name):
            cls = get_model(name, family)
            for f in dataclasses.fields(cls.Config):
                _check_range(f.name, getattr(cls.Config(), f.name), name, cls.Config)
            for task in cls.presets:
                build_config(cls.Config, task, cls.presets, {}, name)
    # the edges of the ranges are accepted: zero epochs (zero-shot use) and width 0 (the LM's width)
    gm = get_model("graph4mm", "generation")
    c = build_config(gm.Config, None, {}, parse_overrides(["epochs=0", "width=0", "alpha=1"]), "graph4mm")
    assert (c.epochs, c.width, c.alpha) == (0, 0, 1.0)


def test_exponent_strings_become_floats_only_for_float_fields():
    from dataclasses import dataclass

    @dataclass
    class C:
        lr: float = 0.1
        name: str = "x"

    cfg = build_config(C, None, {}, parse_overrides(["lr=1e-3", "name=1e5"]), "model m")
    assert cfg.lr == 0.001
    assert cfg.name == "1e5"


def test_card_protocol_features_set_the_models_features():
    """The Ele-fashion cards' ``protocol.features`` is the single source of the feature set of every feature-based
    model; a preset or ``--set`` still overrides it, and models without the key are unaffected."""
    from mmbench.registry import get_model
    from mmbench.tasks import get_card

    card = get_card("ele-fashion-zs")
    assert card.protocol["features"] == "clip"
    for name in ("gcn", "mlp", "logreg", "sgc"):
        cls = get_model(name, "classification")
        assert build_config(cls.Config, card.name, cls.presets, {}, name, card=card).features == "clip"
        c = build_config(cls.Config, card.name, cls.presets, parse_overrides(["features=text"]), name, card=card)
        assert c.features == "text"
    synth = get_card("synth-cls")
    gcn = get_model("gcn", "classification")
    assert build_config(gcn.Config, synth.name, gcn.presets, {}, "gcn", card=synth).features == gcn.Config().features
    lm = get_model("lm-cls", "classification")
    build_config(lm.Config, card.name, lm.presets, {}, "lm-cls", card=card)  # no features key: nothing applied


def test_task_limits_come_from_the_card():
    """MMGL's neighbour caps are the wikiweb-gen card's assembly limits (``task_limits``): a card with other
    values changes MMGL's, a card without them (synth-gen) leaves the model's defaults."""
    import dataclasses

    from mmbench.registry import get_model
    from mmbench.tasks import get_card

    mmgl = get_model("mmgl", "generation")
    card = get_card("wikiweb-gen")
    c = build_config(mmgl.Config, card.name, mmgl.presets, {}, "mmgl", card=card)
    assert (c.max_text_neighbors, c.max_image_neighbors) == (card.dataset["params"]["max_text_neighbors"],
                                                             card.dataset["params"]["max_image_neighbors"])
    params = dict(card.dataset["params"], max_text_neighbors=3, max_image_neighbors=2)
    other = dataclasses.replace(card, dataset=dict(card.dataset, params=params))
    c = build_config(mmgl.Config, other.name, mmgl.presets, {}, "mmgl", card=other)
    assert (c.max_text_neighbors, c.max_image_neighbors) == (3, 2)
    synth = get_card("synth-gen")
    c = build_config(mmgl.Config, synth.name, mmgl.presets, {}, "mmgl", card=synth)
    assert (c.max_text_neighbors, c.max_image_neighbors) == (mmgl.Config().max_text_neighbors,
                                                             mmgl.Config().max_image_neighbors)


def test_a_config_class_can_give_its_own_range_for_a_key():
    """labelprop's alpha is a propagation weight in [0, 1) (0 = the training labels alone), not Graph4MM's
    diffusion alpha in (0, 1]: the class's ``value_ranges`` decides, not the name rule."""
    from mmbench.registry import get_model

    lp = get_model("labelprop")
    assert build_config(lp.Config, None, {}, parse_overrides(["alpha=0"]), "model labelprop").alpha == 0.0
    with pytest.raises(ConfigError, match=re.escape("alpha=1.0 is out of range: expected a value in [0, 1)")):
        build_config(lp.Config, None, {}, parse_overrides(["alpha=1"]), "model labelprop")
    g4 = get_model("graph4mm", "generation")
    with pytest.raises(ConfigError, match=re.escape("alpha=0.0 is out of range: expected a value in (0, 1]")):
        build_config(g4.Config, None, {}, parse_overrides(["alpha=0"]), "model graph4mm")
