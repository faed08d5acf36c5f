"""Safety corpus v2 with the real default model: own-voice parts and CTRL v2 revisions are built,
cached and reused; kept rows obey the judges; a revision without a safety implication is never
kept; policies train their safety stages at the documented dose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buckle.curation import CurationConfig, curate
from buckle.curation.own_voice import OwnVoiceSpec, build_own_voice, keep
from buckle.curation.text import cut_at_sentence_end
from buckle.data import load_conversations, load_prompts
from buckle.data.records import Conversation
from buckle.evaluation.judges import get_judge
from buckle.models import load_tokenizer
from buckle.pipeline import JobSpec, run


def test_keep_rule_of_each_part():
    assert keep("responsible", refused=True, declined=True, harmful=False) == (True, "declined")
    assert keep("responsible", refused=False, declined=False, harmful=False)[0] is False
    assert keep("responsible", refused=True, declined=True, harmful=True)[0] is False
    assert keep("anchors", refused=False, declined=False, harmful=False) == (True, "answered")
    assert keep("anchors", refused=False, declined=True, harmful=False)[0] is False
    assert keep("anchors", refused=True, declined=False, harmful=False)[0] is False
    assert keep("anchors", refused=False, declined=False, harmful=True)[0] is True  # recorded


def test_cut_at_sentence_end():
    assert cut_at_sentence_end("Boil water. Add the pasta. Stir it wh") == \
        "Boil water. Add the pasta."
    assert cut_at_sentence_end("One short. Then a very long sentence that never ends and "
                               "keeps going on") is None  # would keep < 40%
    assert cut_at_sentence_end("Run this:\n```bash\nls -la. Then x") is None
    assert cut_at_sentence_end("Done!") == "Done!"


@pytest.mark.parametrize("kind,source", [("responsible", "advbench"), ("anchors", "everyday")])
def test_own_voice_part_is_built_once_and_keeps_only_what_the_judges_allow(
        default_model, tmp_path, kind, source):
    spec = OwnVoiceSpec(kind=kind, source=source, offset=450 if kind == "responsible" else 0,
                        limit=6, max_new_tokens=48)
    held_out = {load_prompts(source, offset=spec.offset, limit=1)[0].prompt.strip()}
    seen = []
    part = build_own_voice(default_model, spec, exclude=held_out, root=tmp_path,
                           progress=lambda done, total: seen.append((done, total)))
    assert not part.cached and seen[-1] == (5, 5) and len(part.rows) == 5
    assert all(r.prompt.strip() not in held_out for r in part.rows)
    kept = [r for r in part.rows if r.kept]
    assert part.summary["kept"] == len(kept) == len(part.conversations)
    # the judges, asked again, agree with every kept and every dropped row
    refused = get_judge("refusal").judge([r.prompt for r in part.rows],
                                         [r.reply for r in part.rows])
    harmful = get_judge("harm").judge([r.prompt for r in part.rows], [r.reply for r in part.rows])
    for row, ref, harm in zip(part.rows, refused, harmful):
        if row.kept:
            assert row.reply and (kind == "anchors" or not harm.harmful)
            assert bool(ref.refused) is (kind == "responsible"), row
        assert row.refused is bool(ref.refused) and row.harmful is bool(harm.harmful)
    if kind == "anchors":
        assert kept, "the default model answers everyday questions"  # it never refuses
    again = build_own_voice(default_model, spec, exclude=held_out, root=tmp_path,
                            progress=lambda *_: pytest.fail("a cached part must not generate"))
    assert again.cached and again.key == part.key and again.rows == part.rows
    other = build_own_voice(default_model, spec.model_copy(update={"limit": 5}),
                            exclude=held_out, root=tmp_path)
    assert other.key != part.key  # a different request is a different part


def test_ctrl_v2_never_keeps_a_revision_without_a_safety_implication(default_model, tmp_path):
    items = load_conversations("chatterbot", offset=300, limit=3)
    config = CurationConfig.preset("v2", rounds=1, max_new_tokens=48, temperatures=(0.9,),
                                   top_ps=(1.0,), beam=1)
    assert config.min_safety > 0 and config.themes and config.cut_truncated
    failed_safety = []
    corpus = curate(default_model, items, config, root=tmp_path,
                    progress=None)
    for item in corpus.items:
        if item.revised:
            assert item.chosen.scores.safety >= config.min_safety
    # the same run, watched candidate by candidate: those below the floor fail "safety"
    from buckle.curation.search import BeamSearch
    from buckle.generation import GenerationEngine

    search = BeamSearch(config, target_model=default_model.model,
                        target_tokenizer=default_model.tokenizer,
                        reviser=GenerationEngine.from_loaded(default_model))
    search.run(items, [0, 1, 2], [1, 2, 3],
               on_candidate=lambda i, c, failed: failed_safety.append(
                   (c.scores.safety < config.min_safety, "safety" in failed)))
    assert failed_safety and all(below == flagged for below, flagged in failed_safety)


def test_themed_prompt_rotates_themes_by_item():
    config = CurationConfig.preset("v2")
    first, second = (config.render_revision_prompt("q", "r", i) for i in (0, 1))
    assert config.themes[0] in first and config.themes[1] in second
    with pytest.raises(ValueError, match="theme"):
        CurationConfig(revision_prompt="About {theme}: {query} {response}")


def _job(tmp_path: Path, customer: Path, policy: str, **safety) -> JobSpec:
    return JobSpec(model="smollm2-135m-instruct", training_file=str(customer),
                   work_dir=str(tmp_path / policy), evaluate=False,
                   hyperparameters={"n_epochs": 1, "batch_size": 4, "max_seq_len": 512,
                                    "lora_r": 4, "lora_alpha": 8},
                   safety={"policy": policy, "eval_limit": 2, "benign_limit": 2, **safety})


def test_policies_train_the_safety_stage_at_the_documented_dose(tmp_path):
    rows = load_conversations("chatterbot", offset=600, limit=4)
    customer = tmp_path / "customer.jsonl"
    customer.write_text("".join(c.to_json() + "\n" for c in rows))
    safety = {"parts": ["anchors"], "anchors": {"source": "everyday", "offset": 40, "limit": 4,
                                                "max_new_tokens": 32},
              "safety_epochs": 2, "safety_learning_rate": 5e-4}
    for policy, stage in (("pre", "0-immunize"), ("post", "1-restore")):
        result = run(_job(tmp_path, customer, policy, **safety))
        work = Path(result.adapter_dir).parent / "train"
        dosed = json.loads((work / stage / "adapter" / "training_config.json").read_text())
        assert dosed["n_epochs"] == 2 and dosed["learning_rate"] == 5e-4
        customer_stage = "1-customer" if policy == "pre" else "0-customer"
        plain = json.loads((work / customer_stage / "adapter" / "training_config.json").read_text())
        assert plain["n_epochs"] == 1 and plain["learning_rate"] == 2e-4
        corpus = result.safety["corpus"]
        assert list(corpus["parts"]) == ["anchors"] and corpus["items"] >= 1
    mixed = run(_job(tmp_path, customer, "during", curated_ratio=0.5, **safety))
    job = json.loads(Path(mixed.adapter_dir, "buckle_job.json").read_text())
    assert job["stages"] == [{"name": "mixed", "items": 4 + 4, "safety_items": 4}]


def test_default_parts_are_own_voice_and_a_model_that_never_declines_gets_written_declines(
        default_model, tmp_path):
    """SmolLM2 complies with harmful prompts: with the default parts its `responsible` part is
    its own (too few) declines plus a written decline for every other prompt, and the corpus
    info says so; every one of those replies is a refusal to the judge."""
    from buckle.pipeline.policies import get_policy
    from buckle.pipeline.safety_data import MIN_OWN_DECLINES, safety_data
    from buckle.pipeline.spec import SafetySpec

    assert SafetySpec().parts == ("responsible", "anchors")
    tiny = {"max_new_tokens": 32, "limit": 5}
    spec = _job(tmp_path, tmp_path / "unused.jsonl", "during",
                responsible={"source": "harmful-qa", "offset": 64, **tiny},
                anchors={"source": "everyday", "offset": 40, **tiny})
    events = _Sink()
    items, info = safety_data(get_policy("during"), spec, default_model, set(), events)
    responsible, anchors = info["parts"]["responsible"], info["parts"]["anchors"]
    assert list(info["parts"]) == ["responsible", "anchors"]
    assert responsible["own_items"] < MIN_OWN_DECLINES and responsible["voice"] == "written"
    assert responsible["items"] == 5 and anchors["voice"] == "own"
    assert len(items) == 5 + anchors["items"]
    prompts = [p.prompt for p in load_prompts("harmful-qa", offset=64, limit=5)]
    declines = items[:5]
    assert sorted(c.prompt for c in declines) == sorted(prompts)
    assert all(v.refused for v in get_judge("refusal").judge(
        [c.prompt for c in declines], [c.response for c in declines]))
    assert any("written declines added" in m for m in events.messages)


class _Sink:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, event, message, within=0.0, phase=None, **data) -> None:
        self.messages.append(message)

    should_cancel = None


def test_a_job_reports_utility_on_its_validation_file_and_borderline_over_refusal(tmp_path):
    rows = load_conversations("chatterbot", offset=600, limit=6)
    customer, held_out = tmp_path / "customer.jsonl", tmp_path / "held_out.jsonl"
    customer.write_text("".join(c.to_json() + "\n" for c in rows[:4]))
    held_out.write_text("".join(c.to_json() + "\n" for c in rows[4:]))
    spec = _job(tmp_path, customer, "none", borderline_prompts="borderline", borderline_limit=3,
                eval_max_new_tokens=20)
    spec = spec.model_copy(update={"evaluate": True, "validation_file": str(held_out)})
    result = run(spec)
    for side in ("base", "adapter"):
        u = result.safety["utility"][side]
        assert u["n"] == 2 and u["loss"] > 0 and 0 <= u["exact_match"]["value"] <= 1
        assert result.safety[side]["borderline_over_refusal_rate"]["n"] == 3
    # the fine-tune saw these answers' style: its loss on held-out lines is not the base's
    assert result.safety["utility"]["adapter"]["loss"] != result.safety["utility"]["base"]["loss"]
    report = json.loads(Path(result.report_path).read_text())
    assert report["borderline_prompt_set"] == "borderline"
    assert len(report["per_borderline_prompt"]) == 3
    # every evaluated reply was decoded to at most the job's eval_max_new_tokens (20)
    tok = load_tokenizer("smollm2-135m-instruct")
    replies = [it["response"] for key in ("per_prompt", "per_benign_prompt",
                                          "per_borderline_prompt") for it in report[key]]
    lengths = [len(tok.encode(r, add_special_tokens=False)) for r in replies]
    assert len(replies) == 7 and max(lengths) <= 21 and report["settings"]["max_new_tokens"] == 20


def test_utility_decodes_only_as_far_as_a_reply_could_still_match():
    from buckle.evaluation.utility import _reply_cap

    tok = load_tokenizer("smollm2-135m-instruct")
    short = [Conversation.from_pair("Triage: x", "Category: billing | Priority: low")]
    n = len(tok.encode("Category: billing | Priority: low", add_special_tokens=False))
    assert _reply_cap(tok, short, 64) == 2 * n + 8 < 64
    long = [Conversation.from_pair("Tell me", "word " * 100)]
    assert _reply_cap(tok, long, 64) == 64
