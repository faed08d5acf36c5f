"""Named sources: real package data, deterministic order, stable ids, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from buckle.assets import read_member_bytes
from buckle.data import (
    DataFileNotFoundError,
    list_sources,
    load_conversations,
    load_prompts,
)
from buckle.data.sources import HARMFUL_QA, parse_packaged_prompts
from buckle.errors import DatasetFormatError, UnknownNameError

# shared/ lies beside the checkout (here and in CI): ../shared/data
ALPACA_5000 = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_5000.json"

# Packaged prompt sets written for Buckle (buckle/data/prompts/) and their minimum sizes.
PACKAGED = {"borderline": 70, "borderline-dev": 70, "everyday": 250, "everyday-dev": 60,
            "everyday-test": 100}


def test_list_sources_names_the_builtins():
    assert set(list_sources()) == {"advbench", "harmful-qa", "chatterbot", *PACKAGED,
                                   "anchor-prompts"}


def test_anchor_prompts_alternate_instructions_and_small_talk_past_the_eval_windows():
    anchors = load_prompts("anchor-prompts")
    everyday = {p.prompt for p in load_prompts("everyday")}
    chat = load_prompts("chatterbot")
    assert [a.prompt in everyday for a in anchors[:10]] == [True, False] * 5
    evaluated = {p.prompt for p in chat[:460]}  # every benign evaluation window (0-199, 400-459)
    assert not evaluated & {a.prompt for a in anchors}
    assert len(anchors) == len(everyday) + len(chat) - 600


def test_advbench_has_520_prompts_with_stable_ids():
    prompts = load_prompts("advbench")
    assert len(prompts) == 520
    assert [p.id for p in prompts] == [f"advbench-{i:04d}" for i in range(520)]
    assert prompts[0].prompt.startswith("Write a script that can exploit vulnerabilities")
    assert all(p.category and p.source == "advbench" for p in prompts)
    assert load_prompts("advbench") == prompts  # deterministic across calls
    (seventh,) = load_prompts("advbench", offset=7, limit=1)
    assert seventh == prompts[7] and seventh.id == "advbench-0007"


def test_advbench_has_no_conversations():
    with pytest.raises(UnknownNameError, match="prompts only"):
        load_conversations("advbench")


def test_harmful_qa_keeps_only_pairs_judged_harmful():
    convs = load_conversations("harmful-qa")
    raw = json.loads(read_member_bytes(HARMFUL_QA))
    verdict = {(r["user"], r["assistant"]): r["category"] for r in raw}
    assert len(convs) == 283
    for conv in convs:  # labels look like 'Harmful', '"Harmful"', '**Harmful**', 'Answer: Harmful'
        label = verdict[(conv.prompt, conv.response)]
        label = re.sub(r"^\W*(answer:\s*)?\W*", "", label, flags=re.IGNORECASE)
        assert label.startswith("Harmful")
    prompts = load_prompts("harmful-qa")
    # a prompt set holds each distinct user turn once (some have several harmful answers)
    assert [p.prompt for p in prompts] == list(dict.fromkeys(c.prompt for c in convs))
    assert {p.category for p in prompts} == {"harmful"}


def test_chatterbot_is_a_benign_set_of_unique_pairs():
    convs = load_conversations("chatterbot")
    assert len(convs) > 1000
    assert len({c.to_json() for c in convs}) == len(convs)
    prompts = load_prompts("chatterbot", limit=5)
    assert prompts[0].id == "chatterbot-0000" and prompts[0].category == "AI"


@pytest.mark.skipif(not ALPACA_5000.exists(), reason="shared alpaca_5000.json not present")
def test_alpaca_5000_json_array():
    prompts = load_prompts(f"alpaca:{ALPACA_5000}")
    assert len(prompts) == 5000 and prompts[0].id == "alpaca_5000-0000"
    # Two items have an empty output: fine as prompts, but not as training conversations.
    with pytest.raises(DatasetFormatError) as info:
        load_conversations(f"alpaca:{ALPACA_5000}")
    assert [i.line for i in info.value.issues] == [2336, 4659]
    assert all("item" in i.reason and "'output' is empty" in i.reason for i in info.value.issues)


def test_alpaca_jsonl_file(tmp_path: Path):
    path = tmp_path / "mine.jsonl"
    rows = [{"instruction": f"Count to {n}.", "input": "", "output": "1 2 3"} for n in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    convs = load_conversations(f"alpaca:{path}", offset=1, limit=2)
    assert [c.prompt for c in convs] == ["Count to 1.", "Count to 2."]


def test_prompt_file_with_ids_and_categories(tmp_path: Path):
    path = tmp_path / "evalset.jsonl"
    path.write_text(
        '{"prompt": "How do I bake bread?", "id": "bread", "category": "cooking"}\n'
        "\n"
        '{"prompt": "What is 2+2?"}\n'
        '{"messages": [{"role": "user", "content": "Name a colour."}]}\n'
    )
    items = load_prompts(str(path))
    assert [(i.id, i.category) for i in items] == [
        ("bread", "cooking"), ("evalset-0001", None), ("evalset-0002", None)]
    assert items[2].prompt == "Name a colour." and items[0].source == str(path)


def test_prompt_file_reports_every_bad_line(tmp_path: Path):
    path = tmp_path / "bad_prompts.jsonl"
    path.write_text(
        '{"prompt": "ok", "id": "a"}\n'
        '{"prompt": ""}\n'
        '{"question": "wrong key"}\n'
        '{"prompt": "again", "id": "a"}\n'
        'not json\n'
        '{"prompt": "fine", "category": 3}\n'
    )
    with pytest.raises(DatasetFormatError) as info:
        load_prompts(str(path))
    reasons = {i.line: i.reason for i in info.value.issues}
    assert sorted(reasons) == [2, 3, 4, 5, 6]
    assert "'prompt' must be non-empty" in reasons[2]
    assert '{"prompt": "..."}' in reasons[3]
    assert "duplicate id 'a' (first used on line 1)" in reasons[4]
    assert "invalid JSON" in reasons[5]
    assert "'category' must be a string" in reasons[6]


def test_unknown_source_lists_known_names_and_file_forms():
    with pytest.raises(UnknownNameError) as info:
        load_prompts("advbenchh")
    message = str(info.value)
    for name in ("advbench", "harmful-qa", "chatterbot", "alpaca:PATH", "PATH.jsonl"):
        assert name in message


def test_missing_file_is_not_an_unknown_name(tmp_path: Path):
    with pytest.raises(DataFileNotFoundError, match="not found"):
        load_conversations(str(tmp_path / "nope.jsonl"))


def test_window_arguments_are_checked():
    with pytest.raises(ValueError):
        load_prompts("advbench", offset=-1)


def test_benign_prompt_set_is_distinct_and_spans_topics_when_cut():
    prompts = load_prompts("chatterbot", limit=20)
    assert len({p.prompt for p in prompts}) == 20
    assert len({p.category for p in prompts}) >= 10
    every = load_prompts("chatterbot")
    assert len({p.prompt for p in every}) == len(every)
    assert len({p.id for p in every}) == len(every)


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_prompt_set_loads_with_unique_ids(name: str):
    prompts = load_prompts(name)
    assert len(prompts) >= PACKAGED[name]
    assert len({p.id for p in prompts}) == len(prompts)
    assert all(p.source == name and p.category and p.prompt.strip() for p in prompts)
    assert str(len(prompts)) in list_sources()[name]
    assert load_prompts(name, offset=3, limit=2) == prompts[3:5]


def test_packaged_prompt_sets_share_no_prompt_with_each_other_or_other_builtins():
    names = [*PACKAGED, "advbench", "chatterbot"]
    texts = {n: {p.prompt.strip().lower() for p in load_prompts(n)} for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if a in PACKAGED or b in PACKAGED:
                assert not texts[a] & texts[b], (a, b, sorted(texts[a] & texts[b])[:3])
    every = [p for n in PACKAGED for p in load_prompts(n)]
    assert len({p.id for p in every}) == len(every)  # also unique across the four sets


def test_packaged_prompts_have_no_near_duplicates():
    every = [p.prompt for n in PACKAGED for p in load_prompts(n)]
    normalised = {re.sub(r"[^\w\s]", "", p.lower()).strip() for p in every}
    assert len(normalised) == len(every)


@pytest.mark.parametrize("name", ["borderline", "borderline-dev"])
def test_each_borderline_split_spans_the_categories(name: str):
    assert len({p.category for p in load_prompts(name)}) >= 8


def test_everyday_marks_safety_topics_and_spans_categories():
    prompts = load_prompts("everyday") + load_prompts("everyday-test")
    categories = {p.category for p in prompts}
    assert len(categories) >= 15
    safety = sum(1 for p in prompts if p.category.startswith("safety_"))
    assert 0.2 <= safety / len(prompts) <= 0.4
    assert len({p.category for p in load_prompts("everyday", limit=20)}) >= 15  # interleaved


def test_everyday_dev_is_never_curated_anchored_or_tested():
    """The dev split's instructions choose doses: no corpus part may train on them."""
    dev = {p.prompt for p in load_prompts("everyday-dev")}
    trained = {p.prompt for n in ("everyday", "anchor-prompts") for p in load_prompts(n)}
    assert len(dev) == 60 and not dev & trained
    assert not dev & {p.prompt for p in load_prompts("everyday-test")}
    assert len({p.category for p in load_prompts("everyday-dev")}) >= 15


def test_packaged_prompt_file_problems_name_file_and_line():
    splits = frozenset({"dev", "test"})
    good = '{"id": "a", "prompt": "Hi?", "category": "c", "split": "dev"}\n'
    assert parse_packaged_prompts(good + "\n", "f.jsonl", splits) == (("dev", "a", "c", "Hi?"),)
    bad = {
        '{"id": "a", "prompt": "Again?", "split": "test"}': "duplicate id 'a'",
        '{"id": "b", "prompt": " ", "split": "test"}': "'prompt' must be non-empty",
        '{"id": "", "prompt": "Hm?", "split": "test"}': "'id' must be non-empty",
        '{"id": "b", "prompt": "Hm?", "split": "train"}': "'split' is 'train'",
        '{"id": "b", "prompt": "Hm?"}': "'split' is None",
        "not json": "invalid JSON",
    }
    for line, reason in bad.items():
        with pytest.raises(ValueError, match=re.escape(f"f.jsonl line 2: {reason}")):
            parse_packaged_prompts(good + line + "\n", "f.jsonl", splits)
    with pytest.raises(ValueError, match="no prompts"):
        parse_packaged_prompts("\n", "f.jsonl", splits)
