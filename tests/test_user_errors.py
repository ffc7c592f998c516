"""Bad values and broken adapters get one clear line naming what to fix (issue: runs a user can trust)."""

from __future__ import annotations

import os
from pathlib import Path

from mmbench.cli import main

ADAPTERS = '''
import torch
from mmbench.api import KGCModel


class Raises(KGCModel):
    name = "raises"

    def setup(self, data, seed):
        self.n = data.num_entities

    def train_epoch(self, epoch):
        return self.helper()

    def helper(self):
        raise ValueError("bad shape in helper")

    def score_tails(self, h, r):
        return torch.zeros(len(h), self.n)

    def score_heads(self, t, r):
        return torch.zeros(len(t), self.n)


class NoLoss(Raises):
    def train_epoch(self, epoch):
        return None
'''


def _adapter(tmp_path: Path) -> Path:
    path = tmp_path / "user_adapters.py"
    path.write_text(ADAPTERS)
    return path


def test_exception_in_train_epoch_names_the_adapter_frame(env, tmp_path, capsys):
    path = _adapter(tmp_path)
    assert main(["eval", "--model", f"{path}:Raises", "--task", "nations", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err  # the full traceback stays available
    assert err.strip().splitlines()[-1] == f"error: ValueError: bad shape in helper in helper() at {path}:16"
    assert not list(env.results.rglob("*.json"))


def test_train_epoch_returning_none_is_named(env, tmp_path, capsys):
    path = _adapter(tmp_path)
    assert main(["eval", "--model", f"{path}:NoLoss", "--task", "nations", "--quiet"]) == 2
    message = "NoLoss.train_epoch returned None for epoch 1; it must return the epoch's mean training loss"
    assert message in capsys.readouterr().err
    assert main(["validate-adapter", f"{path}:NoLoss", "--task", "nations"]) != 0
    out = capsys.readouterr().out
    assert "FAIL  setup and train one epoch: " + message in out and "TypeError" not in out


def test_bad_config_values_refused_before_training(env, capsys):
    for pair, key in (("epochs=-5", "epochs=-5"), ("lr=-1", "lr=-1.0"), ("dim=0", "dim=0")):
        assert main(["eval", "--model", "distmult", "--task", "nations", "--set", pair, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"error: model distmult (--set): {key} is out of range" in err and "Traceback" not in err
    assert not list(env.results.rglob("*.json"))


def test_pystow_folder_follows_mmbench_cache(env, monkeypatch, capsys):
    monkeypatch.delenv("PYSTOW_HOME")
    assert main(["list", "tasks"]) == 0
    assert os.environ["PYSTOW_HOME"] == str(env.cache / "pystow")
    monkeypatch.setenv("PYSTOW_HOME", str(env.root / "mine"))
    assert main(["list", "tasks"]) == 0
    assert os.environ["PYSTOW_HOME"] == str(env.root / "mine")  # an explicit choice is kept


def test_threads_option_is_used_and_recorded(env, capsys):
    import json

    import torch

    before = torch.get_num_threads()
    try:
        assert main(["eval", "--model", "distmult", "--task", "nations", "--set", "epochs=1", "--quiet",
                     "--threads", "1"]) == 0
        record = json.loads(next(env.results.rglob("*.json")).read_text())
        assert record["device"]["threads"] == 1
        assert main(["eval", "--model", "distmult", "--task", "nations", "--set", "epochs=1", "--quiet",
                     "--threads", "0", "--seed", "1"]) == 2
        assert "--threads 0: expected at least 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_encoders_keep_stdout_clean_and_show_progress_on_stderr(env, capfd):
    """stdout carries mmbench's table and paths only; encoding shows a progress bar on stderr (unless quiet)."""
    from conftest import FIXTURES

    from mmbench.backbones import encode_images, encode_texts
    from mmbench.progress import Progress

    images = [str(p) for p in sorted((FIXTURES / "wikiweb" / "mmgl" / "images").glob("*"))[:3]]
    encode_images(images, "efficientnet-lite0", progress=Progress(quiet=False))
    encode_texts(["a red dress", "two shoes"], "minilm", progress=Progress(quiet=False))
    out, err = capfd.readouterr()
    assert out == ""  # e.g. no "Loaded pretrained weights for efficientnet-lite0"
    assert "encode images (efficientnet-lite0)" in err and "encode texts (minilm)" in err
    encode_texts(["a blue hat"], "minilm", progress=Progress(quiet=True))
    out, err = capfd.readouterr()
    assert out == "" and "encode texts" not in err
