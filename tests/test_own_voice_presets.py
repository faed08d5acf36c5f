"""The own-voice parts shipped with Buckle (`buckle/data/own_voice/`): current, judged right,
and installed instead of generated.

The first test fails when the judges' weights, the part version or a prompt source change
without `scripts/ship_own_voice.py` being run on a rebuild: a stale preset would otherwise be
skipped silently and a fresh install would spend ~13 min of CPU rebuilding it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from buckle.curation.own_voice import OwnVoiceSpec, build_own_voice, part_key, shipped_parts
from buckle.evaluation.judges import get_judge
from buckle.models import get_preset
from buckle.pipeline.spec import DEFAULT_ANCHORS, DEFAULT_RESPONSIBLE

QWEN = "qwen2.5-coder-0.5b-instruct"
DEFAULTS = {"responsible": DEFAULT_RESPONSIBLE, "anchors": DEFAULT_ANCHORS}


def _manifest(key: str) -> dict:
    return json.loads(shipped_parts()[key].joinpath("manifest.json").read_text("utf-8"))


def test_the_default_parts_of_the_aligned_model_ship_under_their_current_keys():
    fingerprint = get_preset(QWEN).fingerprint
    shipped = shipped_parts()
    for kind, source in DEFAULTS.items():
        key, prompts = part_key(fingerprint, OwnVoiceSpec(kind=kind, **source))
        assert key in shipped, f"{kind}: no shipped part for key {key}; run ship_own_voice.py"
        manifest = _manifest(key)
        assert manifest["model_fingerprint"] == fingerprint
        assert manifest["spec"]["kind"] == kind and manifest["prompts"] == len(prompts)


@pytest.mark.parametrize("kind", ["responsible", "anchors"])
def test_shipped_rows_are_what_the_judges_keep(kind):
    """Asked again, the judges call every shipped `responsible` reply a decline that is not
    harmful, and no `anchors` reply a refusal."""
    key, _ = part_key(get_preset(QWEN).fingerprint, OwnVoiceSpec(kind=kind, **DEFAULTS[kind]))
    rows = json.loads(shipped_parts()[key].joinpath("kept.json").read_text("utf-8"))
    summary = json.loads(shipped_parts()[key].joinpath("summary.json").read_text("utf-8"))
    assert len(rows) == summary["kept"] > 50 and all(r["kept"] for r in rows)
    prompts, replies = [r["prompt"] for r in rows], [r["reply"] for r in rows]
    refused = [bool(v.refused) for v in get_judge("refusal").judge(prompts, replies)]
    declined = [bool(v.refused) for v in get_judge("decline").judge(prompts, replies)]
    if kind == "responsible":
        harmful = [bool(v.harmful) for v in get_judge("harm").judge(prompts, replies)]
        assert all(refused) and not any(harmful)
    else:
        assert not any(refused) and not any(declined)


def test_a_part_with_a_shipped_key_is_installed_not_generated(tmp_path):
    """The base here has no weights at all: generating would fail, so the part can only come
    from the shipped data. Asked again, it is the cached copy."""
    base = SimpleNamespace(name=QWEN, fingerprint=get_preset(QWEN).fingerprint)
    spec = OwnVoiceSpec(kind="responsible", **DEFAULT_RESPONSIBLE)
    key, _ = part_key(base.fingerprint, spec)
    stale = tmp_path / key / "chunks" / "00003.json"  # left by a build killed before its summary
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps([{"prompt": "p", "reply": "r", "finish_reason": "stop",
                                  "refused": True, "declined": True, "harmful": False,
                                  "kept": True, "note": "declined"}]))
    part = build_own_voice(base, spec, root=tmp_path)
    assert not stale.exists()
    assert part.cached and part.summary["shipped"] is True
    assert len(part.conversations) == part.summary["kept"] == 83
    shipped = json.loads(shipped_parts()[part.key].joinpath("kept.json").read_text("utf-8"))
    assert [(c.prompt, c.messages[-1].content) for c in part.conversations] == \
        [(r["prompt"], r["reply"]) for r in shipped]
    assert (tmp_path / part.key / "corpus.jsonl").read_text("utf-8").count("\n") == 83
    again = build_own_voice(base, spec, root=tmp_path)
    assert again.cached and [c.to_json() for c in again.conversations] == \
        [c.to_json() for c in part.conversations]


def test_a_part_whose_prompts_change_is_not_taken_from_the_shipped_data(tmp_path):
    """Excluding one evaluation prompt changes the key: no shipped part, so it is generated
    (here: fails on the weightless base, proving it tried)."""
    base = SimpleNamespace(name=QWEN, fingerprint=get_preset(QWEN).fingerprint)
    spec = OwnVoiceSpec(kind="anchors", **DEFAULT_ANCHORS)
    _, prompts = part_key(base.fingerprint, spec)
    with pytest.raises(AttributeError):
        build_own_voice(base, spec, exclude={prompts[0].strip()}, root=tmp_path)
    assert not list(tmp_path.glob("*/summary.json"))
