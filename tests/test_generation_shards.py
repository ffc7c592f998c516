"""Sharded test decoding gives exactly the predictions and metrics of an unsharded run."""

from __future__ import annotations

import json

from mmbench.cli import main

ADAPTER = '''
from dataclasses import dataclass
import torch
from mmbench.api import GenerationModel, TrainSchedule

@dataclass
class Config(TrainSchedule):
    epochs: int = 1
    eval_every: int = 1

class Echo(GenerationModel):
    """Deterministic toy: answers with words of the neighbours' texts chosen by a seeded table."""
    Config = Config

    def setup(self, data, seed):
        g = torch.Generator().manual_seed(seed)
        self.module = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.module.weight.copy_(torch.rand(1, 1, generator=g))

    def train_epoch(self, epoch):
        with torch.no_grad():
            self.module.weight.add_(0.1)
        return 0.0

    def generate(self, samples, max_new_tokens, num_beams=1):
        out = []
        w = float(self.module.weight.detach())
        for s in samples:
            words = " ".join(n.text or "" for n in s.nodes[1:]).split()
            k = int(w * 1000) % max(1, len(words)) if words else 0
            out.append(" ".join(words[k:k + 4]))
        return out
'''


def test_sharded_decoding_equals_unsharded(env, tmp_path):
    path = tmp_path / "echo.py"
    path.write_text(ADAPTER)
    base = ["eval", "--model", f"{path}:Echo", "--task", "synth-gen", "--quiet", "--log-samples"]
    assert main(base + ["--results-dir", str(tmp_path / "one")]) == 0
    assert main(base + ["--results-dir", str(tmp_path / "three"), "--shards", "3"]) == 0
    one = json.loads(next((tmp_path / "one").rglob("*.json")).read_text())
    three = json.loads(next((tmp_path / "three").rglob("*.json")).read_text())
    assert one["run_key"] == three["run_key"]
    assert three["protocol"]["test_shards"] == 3
    assert one["metrics"]["test"] == three["metrics"]["test"]
    assert one["metrics"]["test"]["cider"] > 0
    from mmbench.io import read_jsonl_gz

    s1 = read_jsonl_gz(next((tmp_path / "one").rglob("*.samples.jsonl.gz")))
    s3 = read_jsonl_gz(next((tmp_path / "three").rglob("*.samples.jsonl.gz")))
    assert s1 == s3 and len(s1) == 200  # synth-gen v2 test split
