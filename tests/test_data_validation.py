"""Dataset validation: every bad line is reported with its line number; bad files accept nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buckle.data import (
    Conversation,
    count_chat_tokens,
    load_conversations,
    load_conversations_jsonl,
    parse_conversation_lines,
)
from buckle.errors import DatasetFormatError


@pytest.fixture(scope="module")
def default_tokenizer():
    from buckle.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


def _chat(*turns: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]})


GOOD = _chat(("user", "Hi"), ("assistant", "Hello!"))
ASSISTANT = {"role": "assistant", "content": "x"}

# (line number, raw line, a phrase its reason must contain); line 2 is blank and skipped.
BAD_LINES: list[tuple[int, bytes, str]] = [
    (3, b'{"messages": [', "invalid JSON"),
    (4, b"[1, 2]", "expected a JSON object, got a JSON array"),
    (5, b'{"prompt": "hi"}', "no 'messages' field"),
    (6, b'{"messages": "hi"}', "'messages' must be a list"),
    (7, b'{"messages": []}', "'messages' is empty"),
    (8, b'{"messages": ["hi", {"role": "assistant", "content": "x"}]}',
     "message 1 must be an object"),
    (9, _chat(("bot", "hi"), ("assistant", "x")).encode(),
     "allowed roles are 'system', 'user', 'assistant'"),
    (10, json.dumps({"messages": [{"role": "user", "content": ["a"]}, ASSISTANT]}).encode(),
     "'content' must be a string, got a JSON array"),
    (11, _chat(("user", "hi"), ("assistant", "   ")).encode(), "message 2 has empty content"),
    (12, _chat(("system", "be nice"), ("user", "hi")).encode(), "no assistant message"),
    (13, _chat(("user", "a"), ("assistant", "b"), ("user", "c")).encode(),
     "last message is 'user', not 'assistant'"),
    (14, b'{"input": "", "output": "x"}', "Alpaca record has no 'instruction'"),
    (15, b'{"instruction": "Say hi", "input": "", "output": " "}', "Alpaca 'output' is empty"),
    (17, b'{"messages": "caf\xe9"}', "not valid UTF-8 (byte 0xe9"),
    (18, _chat(("assistant", "unprompted")).encode(), "no user message"),
]


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    alpaca = b'{"instruction": "Add", "input": "1+1", "output": "2"}'
    lines = {1: GOOD.encode(), 2: b"   ", 16: alpaca}
    lines |= {n: raw for n, raw, _ in BAD_LINES}
    path = tmp_path_factory.mktemp("data") / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines[n] for n in sorted(lines)) + b"\n")
    return path


@pytest.fixture(scope="module")
def mixed_error(mixed_file: Path) -> DatasetFormatError:
    with pytest.raises(DatasetFormatError) as info:
        load_conversations_jsonl(mixed_file)
    return info.value


def test_every_bad_line_is_reported_once_and_nothing_accepted(mixed_error: DatasetFormatError):
    assert [i.line for i in mixed_error.issues] == [n for n, _, _ in BAD_LINES]
    assert "nothing was accepted" in str(mixed_error)


@pytest.mark.parametrize(("line", "needle"), [(n, needle) for n, _, needle in BAD_LINES])
def test_reason_names_the_problem(mixed_error: DatasetFormatError, line: int, needle: str):
    (issue,) = [i for i in mixed_error.issues if i.line == line]
    assert needle in issue.reason
    assert ";" in issue.reason  # every reason goes on to say how to fix it


def test_good_lines_parse_with_crlf_bom_and_blank_lines():
    alpaca = b'{"instruction": "Add", "output": "2"}'
    data = b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n\r\n" + alpaca + b"\r\n"
    first, second = parse_conversation_lines(data, "upload.jsonl")
    assert first.response == "Hello!" and second.prompt == "Add"


def test_lines_from_an_iterable_keep_their_numbers():
    with pytest.raises(DatasetFormatError) as info:
        parse_conversation_lines([GOOD + "\n", "\n", "nope\n"], "upload.jsonl")
    assert [i.line for i in info.value.issues] == [3]


def test_empty_file_is_rejected():
    with pytest.raises(DatasetFormatError, match="no records"):
        parse_conversation_lines(b"\n\n", "empty.jsonl")


def test_conversation_helpers_and_round_trip():
    text = _chat(("system", "Be brief."), ("user", "Capital of France?"), ("assistant", "Paris."))
    (conv,) = parse_conversation_lines(text.encode(), "x.jsonl")
    assert [m.role for m in conv.prompt_messages] == ["system", "user"]
    assert conv.response == "Paris." and conv.prompt == "Capital of France?"
    assert json.loads(conv.to_json()) == json.loads(text)


def test_alpaca_conversion_joins_input_into_the_user_turn():
    with_input = Conversation.from_alpaca("Translate to French.", "cheese", "fromage")
    assert with_input.to_messages() == [
        {"role": "user", "content": "Translate to French.\n\ncheese"},
        {"role": "assistant", "content": "fromage"},
    ]
    assert Conversation.from_alpaca("Say hi.", "  ", "hi").prompt == "Say hi."


def test_json_array_items_are_numbered_by_item(tmp_path: Path):
    path = tmp_path / "alpaca.json"
    items = [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": ""}]
    path.write_text(json.dumps(items, indent=2))
    with pytest.raises(DatasetFormatError) as info:
        load_conversations_jsonl(path)
    (issue,) = info.value.issues
    assert issue.line == 2 and issue.reason.startswith("item 2 of the JSON array")


def test_broken_json_array_reports_the_syntax_error_line(tmp_path: Path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",,}\n]')
    with pytest.raises(DatasetFormatError) as info:
        load_conversations_jsonl(path)
    assert [i.line for i in info.value.issues] == [3]


def test_too_long_for_the_model_is_a_bad_line(tmp_path: Path, default_tokenizer):
    short = Conversation.from_pair("Hi", "Hello!")
    limit = count_chat_tokens(default_tokenizer, short) + 5
    long = _chat(("user", "Tell me a story."), ("assistant", "Once upon a time " * 50))
    path = tmp_path / "lengths.jsonl"
    path.write_text(f"{short.to_json()}\n{long}\n{short.to_json()}" + "\n")
    with pytest.raises(DatasetFormatError) as info:
        load_conversations_jsonl(path, tokenizer=default_tokenizer, max_tokens=limit)
    (issue,) = info.value.issues
    assert issue.line == 2 and f"over the limit of {limit}" in issue.reason
    assert len(load_conversations_jsonl(path, tokenizer=default_tokenizer, max_tokens=4096)) == 3


def test_builtin_source_length_check_names_the_item(default_tokenizer):
    with pytest.raises(DatasetFormatError) as info:
        load_conversations("harmful-qa", limit=3, offset=10, tokenizer=default_tokenizer,
                           max_tokens=8)
    assert [i.line for i in info.value.issues] == [11, 12, 13]
    assert info.value.issues[0].reason.startswith("item 11:")


def test_max_tokens_without_a_tokenizer_is_a_usage_error():
    with pytest.raises(ValueError, match="tokenizer"):
        parse_conversation_lines(GOOD.encode(), "x.jsonl", max_tokens=10)


@pytest.mark.parametrize(("bad", "needle"), [
    (b"[" * 1200, "nested too deeply"),
    (b'{"messages": ' + b"9" * 4301 + b"}", "4,300 digits"),
    (b'{"messages": NaN}', "NaN is not valid JSON"),
    (b'{"messages": [{"role": "user", "content": "\\udfff"}]}', "surrogate"),
])
def test_parser_failures_are_line_issues_not_crashes(tmp_path: Path, bad: bytes, needle: str):
    """json.loads raises RecursionError / ValueError on these; they must stay line errors."""
    good = _chat(("user", "hi"), ("assistant", "hello")).encode()
    path = tmp_path / "data.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n" + good + b"\n")
    with pytest.raises(DatasetFormatError) as caught:
        load_conversations_jsonl(path)
    assert [i.line for i in caught.value.issues] == [2]
    assert needle in caught.value.issues[0].reason
