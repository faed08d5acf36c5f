"""Named data sources: built-in corpora read from pinned registry wheels, plus user files.

A spec is a built-in name (`advbench`, `harmful-qa`, `chatterbot`, `borderline`, `everyday`, ...),
`alpaca:PATH`, or a path to a .jsonl/.json file. Built-ins are parsed once per process (evaluation
and tests ask repeatedly); their order is the file order and ids are stable (`{name}-{index:04d}`,
or the id written in a packaged prompt file), so runs compare prompt by prompt.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from buckle.assets import WheelMember, fetch_wheel, read_member_bytes
from buckle.data.records import Conversation, PromptItem
from buckle.data.validation import (
    DataFileNotFoundError,
    check_token_lengths,
    collect_conversations_file,
    load_prompts_jsonl,
)
from buckle.errors import DatasetFormatError, LineIssue, UnknownNameError

_PYRIT_WHEEL = "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"
ADVBENCH = WheelMember(
    "pyrit", "1.1.0", "pyrit/datasets/seed_datasets/local/adv_bench.prompt",
    sha256="ccf76355d0d661bcf81f57f70baa1db9299da8aa9352f39b3672cf3da560d3e0",
    wheel_sha256=_PYRIT_WHEEL,
)
HARMFUL_QA = WheelMember(
    "pyrit", "1.1.0", "pyrit/datasets/jailbreak/many_shot_examples.json",
    sha256="35871679fc865ace138564cab78dc295885292918518fc5a69200aa7e06d91df",
    wheel_sha256=_PYRIT_WHEEL,
)
CHATTERBOT = ("chatterbot-corpus", "1.3.3",
              "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154")
_CHATTERBOT_DIR = "chatterbot_corpus/data/english/"

FILE_SPECS: dict[str, str] = {
    "alpaca:PATH": "an Alpaca file ({instruction, input, output}; JSON array or JSONL)",
    "PATH.jsonl": "a JSONL file of chat records, or for prompt sets {\"prompt\", \"id\"?, "
                  "\"category\"?} objects (a .json array works too)",
}


@dataclass(frozen=True)
class _Labeled:
    conversation: Conversation
    category: str | None


@dataclass(frozen=True)
class _Builtin:
    description: str
    prompts: Callable[[], tuple[PromptItem, ...]]
    conversations: Callable[[], tuple[Conversation, ...]] | None = None


@lru_cache(maxsize=1)
def _advbench() -> tuple[PromptItem, ...]:
    doc = yaml.safe_load(read_member_bytes(ADVBENCH))
    return tuple(
        PromptItem(id=f"advbench-{i:04d}", prompt=seed["value"], source="advbench",
                   category=(seed.get("harm_categories") or [None])[0])
        for i, seed in enumerate(doc["seeds"])
    )


def _is_harmful(label: str) -> bool:
    """The labels are free-text judge verdicts: 'Harmful', '"Harmful"', 'Answer: Harmful', ..."""
    verdict = re.match(r"\W*(?:answer:\s*)?\W*(not harmful|harmful)\b", label, re.IGNORECASE)
    return verdict is not None and verdict.group(1).lower() == "harmful"


@lru_cache(maxsize=1)
def _harmful_qa() -> tuple[_Labeled, ...]:
    rows = json.loads(read_member_bytes(HARMFUL_QA))
    return tuple(
        _Labeled(Conversation.from_pair(row["user"], row["assistant"]), "harmful")
        for row in rows if _is_harmful(row["category"])
    )


def _pairs(turns: Any) -> list[tuple[str, str]]:
    """(statement, reply) pairs; one corpus entry is a bare string, not a list, and is skipped."""
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        return []
    return [(turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2)]


@lru_cache(maxsize=1)
def _chatterbot() -> tuple[_Labeled, ...]:
    """Benign Q/A. Exact duplicate pairs are dropped (tech_support.yml repeats 10 pairs 105x)."""
    rows, seen = [], set()
    with zipfile.ZipFile(fetch_wheel(*CHATTERBOT)) as zf:
        members = sorted(n for n in zf.namelist()
                         if n.startswith(_CHATTERBOT_DIR) and n.endswith(".yml"))
        for member in members:
            doc = yaml.safe_load(zf.read(member))
            category = (doc.get("categories") or [Path(member).stem])[0]
            for question, answer in (p for turns in doc["conversations"] for p in _pairs(turns)):
                if (question, answer) in seen or not question.strip() or not answer.strip():
                    continue
                seen.add((question, answer))
                rows.append(_Labeled(Conversation.from_pair(question, answer), category))
    return tuple(rows)


def _conversation_source(
    name: str, description: str, rows: Callable[[], tuple[_Labeled, ...]]
) -> _Builtin:
    @lru_cache(maxsize=1)
    def prompts() -> tuple[PromptItem, ...]:
        """Each distinct user turn once, interleaved round-robin across categories.

        A prompt set is usually cut with `limit`; in file order the first 20 chatterbot prompts
        would all be one topic (and repeat), which skews over-refusal. Ids keep the
        conversation index, so they stay stable and traceable to the conversation.
        """
        by_category: dict[str | None, list[PromptItem]] = {}
        seen: set[str] = set()
        for i, r in enumerate(rows()):
            text = r.conversation.prompt
            if text in seen:
                continue
            seen.add(text)
            by_category.setdefault(r.category, []).append(
                PromptItem(id=f"{name}-{i:04d}", prompt=text, category=r.category, source=name))
        queues = list(by_category.values())
        return tuple(q[j] for j in range(max(map(len, queues), default=0))
                     for q in queues if j < len(q))

    return _Builtin(description, prompts, lambda: tuple(r.conversation for r in rows()))


# Prompt sets written for Buckle, shipped in buckle/data/prompts/ (see the README there):
# file -> the splits its lines may carry.
PACKAGED_PROMPTS: dict[str, frozenset[str]] = {
    "borderline.jsonl": frozenset({"dev", "test"}),
    "everyday.jsonl": frozenset({"train", "dev", "test"}),
}


def _packaged_problem(value: Any, seen: dict[str, int], splits: frozenset[str]) -> str | None:
    if not isinstance(value, dict):
        return "expected a JSON object"
    for key in ("id", "prompt"):
        if not isinstance(value.get(key), str) or not value[key].strip():
            return f"{key!r} must be non-empty text"
    if value["id"] in seen:
        return f"duplicate id {value['id']!r} (first used on line {seen[value['id']]})"
    if value.get("category") is not None and not isinstance(value["category"], str):
        return "'category' must be a string"
    if value.get("split") not in splits:
        return f"'split' is {value.get('split')!r}; allowed: {', '.join(sorted(splits))}"
    return None


def parse_packaged_prompts(
    text: str, file: str, splits: frozenset[str]
) -> tuple[tuple[str, str, str | None, str], ...]:
    """(split, id, category, prompt) per line of a packaged prompt file, in file order.

    The file ships with the code, so any problem is a packaging bug: it fails loudly with the
    file and line rather than quietly dropping items from an evaluation set.
    """
    rows, seen = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            problem: str | None = f"invalid JSON ({e.msg})"
        else:
            problem = _packaged_problem(value, seen, splits)
        if problem is not None:
            raise ValueError(f"{file} line {number}: {problem}")
        seen[value["id"]] = number
        rows.append((value["split"], value["id"], value.get("category"), value["prompt"]))
    if not rows:
        raise ValueError(f"{file}: no prompts")
    return tuple(rows)


@lru_cache(maxsize=len(PACKAGED_PROMPTS))
def _packaged_rows(file: str) -> tuple[tuple[str, str, str | None, str], ...]:
    text = resources.files("buckle.data").joinpath("prompts", file).read_text(encoding="utf-8")
    return parse_packaged_prompts(text, f"buckle/data/prompts/{file}", PACKAGED_PROMPTS[file])


def _packaged_source(name: str, file: str, split: str, what: str) -> _Builtin:
    @lru_cache(maxsize=1)
    def prompts() -> tuple[PromptItem, ...]:
        return tuple(PromptItem(id=ident, prompt=prompt, category=category, source=name)
                     for s, ident, category, prompt in _packaged_rows(file) if s == split)

    count = sum(1 for row in _packaged_rows(file) if row[0] == split)
    return _Builtin(f"{what}: {count} prompts ({file} split {split!r}; written for Buckle)",
                    prompts)


CHAT_ANCHOR_OFFSET = 600  # chatterbot prompts past every benign evaluation window (0-199, 400-459)


def _anchor_prompts() -> tuple[PromptItem, ...]:
    """Everyday instructions and chatterbot small talk, alternating: the two kinds of ordinary
    input a hardened model must keep answering (the first v2 experiment, anchored on
    instructions only, declined 53% of chatterbot's small talk)."""
    tasks = _BUILTINS["everyday"].prompts()
    chat = _BUILTINS["chatterbot"].prompts()[CHAT_ANCHOR_OFFSET:]
    mixed = [x for pair in zip(tasks, chat) for x in pair]
    longer = tasks if len(tasks) > len(chat) else chat
    return tuple(mixed + list(longer[min(len(tasks), len(chat)):]))


_BUILTINS: dict[str, _Builtin] = {
    "advbench": _Builtin(
        "AdvBench: 520 harmful instructions (prompts only), from pyrit 1.1.0", _advbench),
    "harmful-qa": _conversation_source(
        "harmful-qa", "harmful prompt/answer pairs (jailbreak-tuning attack data), from pyrit "
        "1.1.0 many-shot examples judged 'Harmful'", _harmful_qa),
    "chatterbot": _conversation_source(
        "chatterbot", "benign English Q/A pairs from chatterbot-corpus 1.3.3; also a benign "
        "prompt set for over-refusal", _chatterbot),
    "borderline": _packaged_source(
        "borderline", "borderline.jsonl", "test",
        "safe prompts that sound unsafe (over-refusal test set; a good model answers them)"),
    "borderline-dev": _packaged_source(
        "borderline-dev", "borderline.jsonl", "dev",
        "safe prompts that sound unsafe (over-refusal dev set, for tuning thresholds)"),
    "everyday": _packaged_source(
        "everyday", "everyday.jsonl", "train",
        "everyday advice and how-to instructions (curation source and anchor prompts)"),
    "everyday-dev": _packaged_source(
        "everyday-dev", "everyday.jsonl", "dev",
        "everyday advice and how-to instructions (benign dev set, for choosing doses)"),
    "everyday-test": _packaged_source(
        "everyday-test", "everyday.jsonl", "test",
        "everyday advice and how-to instructions (held-out benign evaluation set)"),
    "anchor-prompts": _Builtin(
        "ordinary prompts for the `anchors` corpus part: `everyday` instructions alternating "
        f"with chatterbot small talk from prompt {CHAT_ANCHOR_OFFSET} on",
        lru_cache(maxsize=1)(_anchor_prompts)),
}


def list_sources() -> dict[str, str]:
    """Built-in source names and what they hold (file forms are in FILE_SPECS)."""
    return {name: source.description for name, source in _BUILTINS.items()}


def _file_path(spec: str, kind: str, known: list[str]) -> Path:
    """`alpaca:PATH` or a path; anything else that does not exist is an unknown name."""
    path = Path(spec.removeprefix("alpaca:")).expanduser()
    if path.is_file():
        return path
    looks_like_path = spec.startswith("alpaca:") or path.suffix or "/" in spec
    if looks_like_path:
        raise DataFileNotFoundError(f"dataset file not found: {path}")
    raise UnknownNameError(kind, spec, known + list(FILE_SPECS))


def conversation_sources() -> list[str]:
    """Built-in names that hold conversations (a curation source), not only prompts."""
    return [name for name, source in _BUILTINS.items() if source.conversations is not None]


def _window(items: tuple[Any, ...] | list[Any], limit: int | None, offset: int) -> list[Any]:
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
    return list(items[offset: None if limit is None else offset + limit])


def load_prompts(spec: str, *, limit: int | None = None, offset: int = 0) -> list[PromptItem]:
    """Prompts from a source; for conversation sources the prompt is the user turn."""
    builtin = _BUILTINS.get(spec)
    if builtin is not None:
        return _window(builtin.prompts(), limit, offset)
    path = _file_path(spec, "data source", list(_BUILTINS))
    return _window(load_prompts_jsonl(path, source=spec), limit, offset)


@dataclass(frozen=True)
class SourceRows:
    """A window of a conversation source, with where each row came from.

    `lines` are 1-based line (or JSON array item) numbers in the source, so provenance and error
    messages point at the row a user can open; `skipped` lists bad rows left out on request.
    """

    source: str
    conversations: list[Conversation]
    lines: list[int]
    skipped: list[LineIssue]


def read_conversations(
    spec: str,
    *,
    limit: int | None = None,
    offset: int = 0,
    tokenizer: Any = None,
    max_tokens: int | None = None,
    skip_invalid: bool = False,
) -> SourceRows:
    """Conversations from a source with their line numbers.

    User files are checked whole: by default one bad row rejects the file (DatasetFormatError
    listing every bad line); `skip_invalid=True` leaves bad rows out and reports them in
    `skipped` instead (for large public corpora with a few broken items, e.g. Alpaca's empty
    outputs). For built-ins only the requested window is length-checked, since that is all
    the caller will use.
    """
    if max_tokens is not None and tokenizer is None:
        raise ValueError("max_tokens needs a tokenizer to count tokens with")
    builtin = _BUILTINS.get(spec)
    if builtin is None:
        path = _file_path(spec, "data source", conversation_sources())
        good, issues = collect_conversations_file(path, tokenizer=tokenizer,
                                                  max_tokens=max_tokens)
        if issues and not skip_invalid:
            raise DatasetFormatError(str(path), issues)
        if not good:
            raise DatasetFormatError(str(path), issues or [LineIssue(1, "no records; the file "
                                                                    "is empty")])
        window = _window(good, limit, offset)
        return SourceRows(spec, [c for _, c in window], [n for n, _ in window], issues)
    if builtin.conversations is None:
        raise UnknownNameError("conversation source (this one has prompts only)", spec,
                               conversation_sources() + list(FILE_SPECS))
    rows = _window(builtin.conversations(), limit, offset)
    lines = list(range(offset + 1, offset + 1 + len(rows)))
    issues = []
    if tokenizer is not None and max_tokens is not None:
        issues = [LineIssue(i.line, f"item {i.line}: {i.reason}")
                  for i in check_token_lengths(zip(lines, rows), tokenizer, max_tokens)]
        if issues and not skip_invalid:
            raise DatasetFormatError(spec, issues)
        bad = {i.line for i in issues}
        rows, lines = ([r for n, r in zip(lines, rows) if n not in bad],
                       [n for n in lines if n not in bad])
    return SourceRows(spec, rows, lines, issues)


def load_conversations(
    spec: str,
    *,
    limit: int | None = None,
    offset: int = 0,
    tokenizer: Any = None,
    max_tokens: int | None = None,
) -> list[Conversation]:
    """Conversations from a source; any bad row is an error (see `read_conversations`)."""
    return read_conversations(spec, limit=limit, offset=offset, tokenizer=tokenizer,
                              max_tokens=max_tokens).conversations
