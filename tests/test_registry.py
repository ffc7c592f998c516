"""The model registry: builtins, path/to/file.py:ClassName, the ``mmbench.models`` entry-point group."""

from __future__ import annotations

import sys
import textwrap

import pytest

from mmbench import registry
from mmbench.api import KGCModel, ModelAdapter
from mmbench.cli import main
from mmbench.errors import ConfigError
from mmbench.registry import all_models, get_model, register_model

BUILTINS = {"transe", "distmult", "complex", "rotate", "tucker", "mm-concat"}

ADAPTER_SRC = textwrap.dedent('''
    from mmbench.api import KGCModel


    class Helper:
        pass


    class Complete(KGCModel):
        def setup(self, data, seed): ...
        def train_epoch(self, epoch): return 0.0
        def score_tails(self, heads, relations): ...
        def score_heads(self, relations, tails): ...


    class MyAdapter(Complete):
        description = "user adapter from a file"


    class OtherAdapter(Complete):
        pass


    class Unfinished(KGCModel):
        def setup(self, data, seed): ...
        def train_epoch(self, epoch): return 0.0
''')


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private copy of the registry; the real one is restored afterwards."""
    all_models()  # make sure the builtins are in before copying
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    return registry


def test_builtin_models_present():
    models = all_models()
    assert set(models) >= BUILTINS
    assert list(models) == sorted(models)
    for name in BUILTINS:
        cls = models[name]
        assert cls.name == name
        assert issubclass(cls, KGCModel) and cls.family == "kgc"
        assert cls.description
    assert get_model("distmult").__module__ == "baselines.one_to_all"
    assert get_model("transe").__module__ == "baselines.kge"
    assert get_model("mm-concat").__module__ == "baselines.mm_concat"


def test_list_models(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()]
    assert set(names) >= BUILTINS
    assert any(line.split()[:2] == ["tucker", "kgc"] for line in out.splitlines())


def test_unknown_model_suggests_closest():
    with pytest.raises(ConfigError) as e:
        get_model("distmul")
    assert "unknown model 'distmul'. Did you mean 'distmult'?" in str(e.value)


class Complete(KGCModel):
    def setup(self, data, seed): ...

    def train_epoch(self, epoch): return 0.0

    def score_tails(self, heads, relations): ...

    def score_heads(self, relations, tails): ...


def test_register_model_decorator(isolated_registry):
    @register_model("toy-model")
    class Toy(Complete):
        pass

    assert Toy.name == "toy-model"
    assert get_model("toy-model") is Toy
    # re-registering the same class is fine; a different class under the name is not
    assert register_model("toy-model")(Toy) is Toy

    class Other(Complete):
        pass

    with pytest.raises(ValueError, match="model name 'toy-model' is already registered"):
        register_model("toy-model")(Other)
    with pytest.raises(TypeError, match="must decorate a ModelAdapter subclass"):
        register_model("not-a-model")(dict)


def test_model_from_file(tmp_path):
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SRC)
    cls = get_model(f"{path}:MyAdapter")
    assert cls.__name__ == "MyAdapter"
    assert issubclass(cls, KGCModel)
    assert cls.name == "my_adapter:MyAdapter"
    assert cls.description == "user adapter from a file"


def test_model_from_file_missing_class_suggests_closest(tmp_path):
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SRC)
    with pytest.raises(ConfigError) as e:
        get_model(f"{path}:MyAdaptor")
    msg = str(e.value)
    assert f"{path} has no class 'MyAdaptor'." in msg
    assert "Did you mean 'MyAdapter'" in msg
    assert "Helper" not in msg  # only adapter classes are suggested


def test_model_from_file_not_an_adapter(tmp_path):
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SRC)
    with pytest.raises(ConfigError, match="Helper must subclass an mmbench adapter base"):
        get_model(f"{path}:Helper")


def test_missing_required_methods_are_reported_at_registration(tmp_path, isolated_registry):
    class NoScores(KGCModel):
        def setup(self, data, seed): ...

        def train_epoch(self, epoch): return 0.0

    with pytest.raises(TypeError, match=r"NoScores does not implement score_heads, score_tails \(required by kgc"):
        register_model("no-scores")(NoScores)
    with pytest.raises(TypeError):
        NoScores()  # and an instance cannot be made either
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SRC)
    with pytest.raises(ConfigError, match="Unfinished does not implement score_heads, score_tails"):
        get_model(f"{path}:Unfinished")


def test_aliases_and_discovered_modules(isolated_registry, monkeypatch):
    monkeypatch.setattr(registry, "_ALIASES", {})
    monkeypatch.setattr(registry, "_BY_FAMILY", dict(registry._BY_FAMILY))

    @register_model("toy-paper-model", aliases=("ToyPaperModel",))
    class Toy(Complete):
        pass

    assert get_model("ToyPaperModel") is Toy and registry.model_families("ToyPaperModel") == ["kgc"]
    modules = registry._model_modules()   # found by reading the packages, no hand-kept list
    assert {"baselines.gnn", "baselines.kge", "mmbench.models.mygo", "mmbench.models.graph4mm"} <= set(modules)
    assert "mmbench.models.lm_forward" not in modules  # helpers that register nothing are not imported for it


def test_model_from_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"file .*nothere\.py does not exist"):
        get_model(f"{tmp_path / 'nothere.py'}:X")


def test_entry_point_group(tmp_path, monkeypatch, isolated_registry, request):
    site = tmp_path / "site"
    dist = site / "fakepkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[mmbench.models]\n"
        "fakemodel = fakepkg_adapter:FakeModel\n"
        "brokenmodel = fakepkg_adapter:DoesNotExist\n"
    )
    (site / "fakepkg_adapter.py").write_text(textwrap.dedent('''
        from mmbench.api import KGCModel


        class FakeModel(KGCModel):
            description = "installed through an entry point"

            def setup(self, data, seed): ...
            def train_epoch(self, epoch): return 0.0
            def score_tails(self, heads, relations): ...
            def score_heads(self, relations, tails): ...
    '''))
    monkeypatch.syspath_prepend(str(site))
    request.addfinalizer(lambda: sys.modules.pop("fakepkg_adapter", None))
    monkeypatch.setattr(registry, "_loaded", False)

    cls = get_model("fakemodel")
    assert cls.__module__ == "fakepkg_adapter" and cls.__name__ == "FakeModel"
    assert cls.name == "fakemodel"
    assert issubclass(cls, ModelAdapter)
    assert BUILTINS | {"fakemodel"} <= set(all_models())
    assert "brokenmodel" not in all_models()


def test_entry_point_failure_is_a_warning(tmp_path, monkeypatch, isolated_registry, capsys):
    site = tmp_path / "site2"
    dist = site / "brokenpkg-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenpkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mmbench.models]\nbrokenmodel = no_such_module_xyz:Model\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_loaded", False)
    models = all_models()
    assert "brokenmodel" not in models and "distmult" in models
    err = capsys.readouterr().err
    assert "warning: entry point mmbench.models:brokenmodel (no_such_module_xyz:Model) failed to load" in err


def test_user_subclass_of_builtin_gets_its_own_name(tmp_path):
    path = tmp_path / "my_variant.py"
    path.write_text(textwrap.dedent('''
        from baselines.one_to_all import DistMult


        class MyDistMult(DistMult):
            description = "a user variant of DistMult"
    '''))
    cls = get_model(f"{path}:MyDistMult")
    assert get_model("distmult").name == "distmult"
    assert cls.name == "my_variant:MyDistMult"
