"""validate-adapter on the classification and generation families."""

from __future__ import annotations

from mmbench.validate import validate_adapter


def test_validate_classification_adapter():
    checks = validate_adapter("mlp", "synth-cls", {"features": "text"})
    assert [c.ok for c in checks] == [True] * 6, [(c.name, c.detail) for c in checks]
    assert "predict gives (8, 6)" in checks[4].detail


def test_validate_generation_adapter():
    checks = validate_adapter("lm-node", "synth-gen", {"lm": "tiny-llama", "max_prompt_tokens": 64})
    assert [c.ok for c in checks] == [True] * 6, [(c.name, c.detail) for c in checks]
    assert "generate gives 2 strings" in checks[4].detail
