"""bench/synth_gen_components.py: which slot of "the <theme> <object> is <quality>" a prediction gets right."""

from __future__ import annotations

import importlib.util

import pytest

from mmbench.paths import PROJECT_ROOT


def _module():
    spec = importlib.util.spec_from_file_location("synth_gen_components",
                                                  PROJECT_ROOT / "bench" / "synth_gen_components.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_component_scores_by_slot():
    m = _module()
    rows = [{"prediction": "the forest novel is restless", "reference": "the forest novel is restless"},
            {"prediction": "the arctic novel is restless", "reference": "the forest novel is restless"},
            {"prediction": "the arctic castle is calm.", "reference": "the forest novel is calm"},
            {"prediction": "novel restless", "reference": "the marine novel is restless"}]
    s = m.component_scores(rows)
    assert s == {"theme": 0.25, "object": 0.5, "quality": 0.75, "all": 0.25, "formed": 0.75}
    ids = [dict(r, id=str(i)) for i, r in enumerate(rows)]
    split = m.component_scores(ids, image_only={"1", "3"})
    assert split["theme_text"] == 0.5 and split["theme_image"] == 0.0   # rows 0, 2 / rows 1, 3 (3 is malformed)
    assert {k: split[k] for k in s} == s
    with pytest.raises(ValueError, match="not a synth-gen target"):
        m.component_scores([{"prediction": "x", "reference": "a b"}])
