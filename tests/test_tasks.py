"""Task cards: validation, the registry of cards, MMBENCH_TASK_PATH, fingerprints."""

from __future__ import annotations

import pytest
from conftest import TASKS_DIR, card_raw, write_card

from mmbench.cli import main
from mmbench.data import load_task_data
from mmbench.errors import ConfigError
from mmbench.tasks import all_cards, get_card, load_card

BUNDLED = {p.stem for p in TASKS_DIR.glob("*.yaml")}
KGC = {"db15k", "kinships", "mkg-w", "mkg-y", "nations", "synth-mmkg", "umls"}


def test_all_bundled_cards_load():
    cards = all_cards()
    assert set(cards) == BUNDLED
    assert KGC <= BUNDLED and {"wikiweb-gen", "ele-fashion", "ele-fashion-zs"} <= BUNDLED
    for name, card in cards.items():
        assert card.name == name
        assert card.path == TASKS_DIR / f"{name}.yaml"
        if name in KGC:
            assert card.family == "kgc"
            assert card.main_metric == "mrr" and "mrr" in card.metrics
        assert card.splits == ("train", "valid", "test")
        assert len(card.card_hash) == 64
    assert cards["nations"].dataset["expected"] == {"entities": 14, "relations": 55, "train": 1592,
                                                    "valid": 199, "test": 201}
    assert cards["db15k"].dataset["expected"]["valid"] == 9904  # not the papers' swapped 9,902


def test_list_tasks_names_every_task_and_data_presence(capsys):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert set(lines) == BUNDLED
    for name in ("nations", "kinships", "umls", "synth-mmkg"):
        assert lines[name].split()[2] == "ready", lines[name]
    for name in ("db15k", "mkg-w", "mkg-y"):  # $MMBENCH_DATA is an empty tmp dir
        assert lines[name].split()[2] == "missing", lines[name]
        assert f"not prepared (run: mmbench data prepare {name} --from DIR)" in out


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: r.pop("main_metric"), "missing required key(s) main_metric"),
    (lambda r: (r.pop("splits"), r.pop("version")), "missing required key(s) version, splits"),
    (lambda r: r.update(family="kgcc"), "family 'kgcc' is not one of classification, generation, kgc. "
                                        "Did you mean 'kgc'?"),
    (lambda r: r.update(main_metric="auc"), "main_metric 'auc' is not listed in 'metrics'"),
    (lambda r: r.update(version="1.0"), "'version' must be an integer"),
    (lambda r: r["dataset"].pop("loader"), "'dataset' must be a mapping with a 'loader' key"),
    (lambda r: r.update(protocol=[1, 2]), "'protocol' must be a mapping"),
])
def test_bad_card_raises_config_error_naming_the_file(tmp_path, mutate, needle):
    raw = card_raw("nations")
    mutate(raw)
    path = write_card(tmp_path, raw, stem="nations")
    with pytest.raises(ConfigError) as e:
        load_card(path)
    assert str(e.value).startswith(f"{path}: ")
    assert needle in str(e.value)


def test_card_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: a task card must be a YAML mapping, got list"):
        load_card(path)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_card(path)


def test_file_name_must_match_card_name(tmp_path):
    path = write_card(tmp_path, card_raw("nations"), stem="nations2")
    with pytest.raises(ConfigError) as e:
        load_card(path)
    assert str(e.value) == f"{path}: the file name must match the card's name (nations.yaml)"


def test_bad_card_on_task_path_is_isolated_and_named(env, monkeypatch, capsys):
    raw = card_raw("nations")
    raw["name"] = "badcard"
    raw["family"] = "graph"
    path = write_card(env.tasks, raw)
    (env.tasks / "badyaml.yaml").write_text("name: badyaml\nfamily: [kgc\n")
    monkeypatch.setenv("MMBENCH_TASK_PATH", str(env.tasks))
    assert get_card("nations").name == "nations"  # every other task stays usable
    with pytest.raises(ConfigError, match=f"^task 'badcard' cannot be used: {path}: family 'graph'"):
        get_card("badcard")
    with pytest.raises(ConfigError, match=r"task 'badyaml' cannot be used: .*badyaml\.yaml: not valid YAML"):
        get_card("badyaml")
    assert main(["list", "tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("nations ") for line in lines)
    broken = [line for line in lines if " broken " in line]
    assert len(broken) == 2 and broken[0].startswith("badcard") and "family 'graph'" in broken[0]
    assert main(["eval", "--model", "distmult", "--task", "badyaml"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_unknown_task_suggests_closest():
    with pytest.raises(ConfigError) as e:
        get_card("nation")
    assert "unknown task 'nation'. Did you mean 'nations'?" in str(e.value)
    assert "mmbench list tasks" in str(e.value)


def test_unknown_task_on_cli_exits_2(capsys):
    assert main(["eval", "--model", "distmult", "--task", "umsl"]) == 2
    assert "Did you mean 'umls'" in capsys.readouterr().err


def test_card_given_by_path(tmp_path):
    raw = card_raw("nations")
    raw["name"] = "my-nations"
    raw["description"] = "Nations under another name."
    path = write_card(tmp_path, raw)
    card = get_card(str(path))
    assert card.name == "my-nations"
    assert card.path == path
    assert card.description == "Nations under another name."
    assert "my-nations" not in all_cards()  # a path is not a registration


def test_missing_card_path():
    with pytest.raises(ConfigError, match=r"task card .*nope\.yaml does not exist"):
        get_card("/nonexistent/nope.yaml")


def test_task_path_adds_cards(env, monkeypatch, capsys):
    raw = card_raw("nations")
    raw["name"] = "nations-extra"
    write_card(env.tasks, raw)
    other = env.root / "more-tasks"
    raw2 = card_raw("umls")
    raw2["name"] = "umls-extra"
    write_card(other, raw2)
    monkeypatch.setenv("MMBENCH_TASK_PATH", f"{env.tasks}:{other}")
    cards = all_cards()
    assert set(cards) == BUNDLED | {"nations-extra", "umls-extra"}
    assert get_card("nations-extra").path == env.tasks / "nations-extra.yaml"
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("nations-extra") and " ready " in line for line in out.splitlines())


def test_bundled_card_wins_over_task_path_clash(env, monkeypatch):
    raw = card_raw("nations")
    raw["description"] = "shadow copy"
    write_card(env.tasks, raw)
    monkeypatch.setenv("MMBENCH_TASK_PATH", str(env.tasks))
    assert get_card("nations").path == TASKS_DIR / "nations.yaml"


def test_fingerprint_follows_card_and_data(tmp_path, install_fixture):
    install_fixture("db15k")
    bundled = get_card("db15k")
    ds = load_task_data(bundled, verify=False)
    h1 = ds.data_hash()
    assert ds.data_hash() == h1  # stable
    fp1 = bundled.fingerprint(h1)

    # same data, card changed -> card_hash and fingerprint change
    raw = card_raw("db15k")
    raw["protocol"]["rank_type"] = "optimistic"
    changed = load_card(write_card(tmp_path / "c", raw))
    assert changed.card_hash != bundled.card_hash
    assert changed.fingerprint(h1) != fp1
    # an identical copy has the same card_hash (the hash is of the parsed card, not the path)
    same = load_card(write_card(tmp_path / "d", card_raw("db15k")))
    assert same.card_hash == bundled.card_hash and same.fingerprint(h1) == fp1

    # same card, one triple changed -> data_hash and fingerprint change
    train = tmp_path / "data" / "db15k" / "train.txt"
    lines = train.read_text().splitlines(keepends=True)
    h, r, t = lines[0].split()
    lines[0] = f"{h}\t{(int(r) + 1) % 6}\t{t}\n"
    train.write_text("".join(lines))
    h2 = load_task_data(bundled, verify=False).data_hash()
    assert h2 != h1
    assert bundled.fingerprint(h2) != fp1


def test_fingerprint_follows_modalities(tmp_path, install_fixture):
    import json

    d = install_fixture("db15k")
    card = get_card("db15k")
    h1 = load_task_data(card, verify=False).data_hash()
    path = d / "tokens" / "DB15K-textual-v2.json"
    text = json.loads(path.read_text())
    text["0"] = text["0"][:-2] + [102]
    path.write_text(json.dumps(text))
    assert load_task_data(card, verify=False).data_hash() != h1


def test_metrics_must_be_a_list(tmp_path):
    raw = card_raw("nations")
    raw["metrics"] = "mrr"
    with pytest.raises(ConfigError, match="metrics"):
        load_card(write_card(tmp_path, raw))
