"""The committed records: each loads as a ``ResultRecord`` and writes back unchanged, its run key is what the
harness would compute for it today, and the committed leaderboard is what they render to."""

from __future__ import annotations

import json

import pytest

from mmbench.paths import PROJECT_ROOT
from mmbench.results import ResultRecord, ResultStore, run_key

RESULTS = PROJECT_ROOT / "results"


def _committed():
    records = list(ResultStore(RESULTS).iter_records())
    assert len(records) > 50, "the repository's results/ should hold the leaderboard's records"
    return records


def test_every_committed_record_round_trips():
    for path, rec in _committed():
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert rec.to_dict() == raw, path
        assert ResultRecord.from_dict(rec.to_dict()) == rec


def test_run_keys_of_committed_records_are_unchanged():
    from mmbench.registry import get_model
    from mmbench.runner import run_key_config

    for path, rec in _committed():
        if rec.model.get("checkpoint"):
            continue  # keyed by the checkpoint's hash as well
        config = run_key_config(get_model(rec.model_name, rec.task["family"]).Config, dict(rec.model["config"]))
        assert run_key(rec.model_name, config, rec.task["fingerprint"], rec.seed) == rec.run_key, path
        assert path.stem == rec.run_key


@pytest.mark.slow
def test_committed_leaderboard_is_what_the_records_render_to(tmp_path):
    import shutil

    from mmbench.leaderboard import write_leaderboard

    out = tmp_path / "lb"
    out.mkdir()
    shutil.copy(PROJECT_ROOT / "leaderboard" / "reported.yaml", out / "reported.yaml")
    write_leaderboard(ResultStore(RESULTS), out, charts=True)
    for page in sorted((PROJECT_ROOT / "leaderboard").glob("*.md")):
        assert (out / page.name).read_text(encoding="utf-8") == page.read_text(encoding="utf-8"), page.name


@pytest.mark.slow
def test_every_leaderboard_job_finds_its_committed_record():
    """Planning leaderboard/sweep.yaml today gives every job the run key of its committed record: nothing the
    leaderboard shows would be recomputed (or silently differ) after a change to the code."""
    from mmbench.sweep import load_sweep_file, plan_jobs

    spec = load_sweep_file(PROJECT_ROOT / "leaderboard" / "sweep.yaml")
    todo, skipped, _ = plan_jobs(spec, RESULTS, verify_data=True, quiet=True)
    assert not todo, [j.name for j in todo]
    assert skipped == len(spec.jobs)
