"""Parse dataset files into records, reporting every bad line at once.

A half-accepted upload would silently train on something the user did not intend, so a file with
any bad line is rejected whole, and the error lists each problem with its line number and a fix:
users repair the file in one pass instead of one error per upload.
"""

from __future__ import annotations

from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from buckle.data.jsonlines import Data, json_type, read_records
from buckle.data.records import ROLES, Conversation, Message, PromptItem
from buckle.errors import BuckleError, DatasetFormatError, LineIssue

ALPACA_KEYS = ("instruction", "input", "output")
_ROLES_TEXT = ", ".join(repr(r) for r in ROLES)
_MESSAGE_SHAPE = '{"role": "user", "content": "..."}'


class DataFileNotFoundError(BuckleError, FileNotFoundError):
    """A dataset path given by the user does not exist."""


def _message_problems(i: int, message: Any) -> list[str]:
    if not isinstance(message, dict):
        return [(f"message {i} must be an object, got a JSON {json_type(message)}; "
                f"write it as {_MESSAGE_SHAPE}")]
    problems = []
    role, content = message.get("role"), message.get("content")
    if "role" not in message:
        problems.append(f"message {i} has no 'role'; use one of {_ROLES_TEXT}")
    elif role not in ROLES:
        problems.append(f"message {i} has role {role!r}; allowed roles are {_ROLES_TEXT}")
    if "content" not in message:
        problems.append(f"message {i} has no 'content'; give the message text as a string")
    elif not isinstance(content, str):
        problems.append(f"message {i} 'content' must be a string, got a JSON "
                        f"{json_type(content)}; put the text in one plain string")
    elif not content.strip():
        problems.append(f"message {i} has empty content; write the text or drop the message")
    return problems


def _chat_messages(value: dict, *, need_reply: bool) -> tuple[tuple[Message, ...], list[str]]:
    """Validate `messages`; `need_reply` = it is a training example, not just a prompt."""
    messages = value["messages"]
    if not isinstance(messages, list):
        return (), [(f"'messages' must be a list, got a JSON {json_type(messages)}; "
                    f"write it as [{_MESSAGE_SHAPE}, ...]")]
    if not messages:
        return (), ["'messages' is empty; add the user message and the assistant reply"]
    problems = [p for i, m in enumerate(messages, 1) for p in _message_problems(i, m)]
    if problems:
        return (), problems
    turns = tuple(Message(role=m["role"], content=m["content"]) for m in messages)
    roles = [m.role for m in turns]
    if need_reply and "assistant" not in roles:
        problems.append("no assistant message; end the conversation with the assistant reply "
                        "the model should learn")
    elif need_reply and roles[-1] != "assistant":
        problems.append(f"last message is {roles[-1]!r}, not 'assistant'; a training example "
                        "must end with the assistant reply: drop the trailing messages")
    elif "user" not in (roles[:-1] if need_reply else roles):
        problems.append("no user message; add the user prompt the assistant reply answers")
    return turns, problems


def _alpaca_text(value: dict, key: str, *, required: bool) -> tuple[str, list[str]]:
    text = value.get(key)
    if text is None and not required:
        return "", []
    if text is None:
        return "", [f"Alpaca record has no {key!r}; give it as a non-empty string"]
    if not isinstance(text, str):
        return "", [f"Alpaca {key!r} must be a string, got a JSON {json_type(text)}"]
    if required and not text.strip():
        return "", [f"Alpaca {key!r} is empty; fill it in or drop the record"]
    return text, []


def _missing_messages(value: dict, extra: str = "") -> list[str]:
    keys = ", ".join(repr(k) for k in value) or "none"
    return [(f"no 'messages' field (keys found: {keys}); use {{\"messages\": [...]}} or Alpaca "
            f"{{\"instruction\", \"input\", \"output\"}}{extra}")]


def _not_an_object(value: Any) -> list[str]:
    return [(f"expected a JSON object, got a JSON {json_type(value)}; "
            'write each record as {"messages": [...]}')]


def _to_conversation(value: Any) -> tuple[Conversation | None, list[str]]:
    if not isinstance(value, dict):
        return None, _not_an_object(value)
    if "messages" in value:
        turns, problems = _chat_messages(value, need_reply=True)
        return (None if problems else Conversation(messages=turns)), problems
    if any(k in value for k in ALPACA_KEYS):
        instruction, p1 = _alpaca_text(value, "instruction", required=True)
        context, p2 = _alpaca_text(value, "input", required=False)
        output, p3 = _alpaca_text(value, "output", required=True)
        problems = p1 + p2 + p3
        if problems:
            return None, problems
        return Conversation.from_alpaca(instruction, context, output), []
    return None, _missing_messages(value)


def _to_prompt(value: Any) -> tuple[tuple[str, Any, Any] | None, list[str]]:
    """(prompt, id, category) from a `prompt` record, an Alpaca record or a chat record."""
    if not isinstance(value, dict):
        return None, _not_an_object(value)
    problems: list[str] = []
    ident, category = value.get("id"), value.get("category")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, str | int)):
        problems.append(f"'id' must be a string or integer, got a JSON {json_type(ident)}")
    if category is not None and not isinstance(category, str):
        problems.append(f"'category' must be a string, got a JSON {json_type(category)}")
    if "prompt" in value:
        prompt = value["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append("'prompt' must be non-empty text")
    elif "messages" in value:
        turns, more = _chat_messages(value, need_reply=False)
        problems += more
        prompt = "" if more else next(m.content for m in reversed(turns) if m.role == "user")
    elif any(k in value for k in ALPACA_KEYS):
        instruction, p1 = _alpaca_text(value, "instruction", required=True)
        context, p2 = _alpaca_text(value, "input", required=False)
        problems += p1 + p2
        prompt = f"{instruction}\n\n{context}" if context.strip() else instruction
    else:
        return None, _missing_messages(value, extra=', or {"prompt": "..."} for a prompt set')
    return (None if problems else (prompt, ident, category)), problems


def count_chat_tokens(tokenizer: Any, conversation: Conversation) -> int:
    """Tokens the model sees for this conversation, chat template included.

    transformers 5 returns a BatchEncoding (dict with `input_ids`) where 4.x returned a list.
    """
    ids = tokenizer.apply_chat_template(conversation.to_messages(), tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    if hasattr(ids, "shape"):
        return int(ids.shape[-1])
    if len(ids) and isinstance(ids[0], list | tuple):
        ids = ids[0]
    return len(ids)


def _too_long(conversation: Conversation, tokenizer: Any, max_tokens: int) -> list[str]:
    n = count_chat_tokens(tokenizer, conversation)
    if n <= max_tokens:
        return []
    return [(f"{n} tokens with the model's chat template, over the limit of {max_tokens}; "
            "shorten this conversation or split it into several")]


def check_token_lengths(
    numbered: Iterable[tuple[int, Conversation]], tokenizer: Any, max_tokens: int
) -> list[LineIssue]:
    """One issue per conversation too long to train on: truncation would cut the reply."""
    return [LineIssue(number, problems[0]) for number, conversation in numbered
            if (problems := _too_long(conversation, tokenizer, max_tokens))]


def _raise_if(issues: list[LineIssue], source_name: str) -> None:
    if issues:
        raise DatasetFormatError(source_name, sorted(issues, key=lambda i: i.line))


def _no_records(source_name: str) -> DatasetFormatError:
    return DatasetFormatError(source_name, [LineIssue(1, "no records; the file is empty")])


def collect_conversations(
    data: Data,
    source_name: str,
    *,
    tokenizer: Any = None,
    max_tokens: int | None = None,
    json_array: bool | None = None,
) -> tuple[list[tuple[int, Conversation]], list[LineIssue]]:
    """Every good record with its line (or array item) number, and every bad one's issue.

    The one parser behind the strict `parse_conversation_lines` and callers that may skip bad
    rows on request (curation sources), so both report identical line numbers and reasons.
    """
    if max_tokens is not None and tokenizer is None:
        raise ValueError("max_tokens needs a tokenizer to count tokens with")
    records, issues = read_records(data, json_array)
    good: list[tuple[int, Conversation]] = []
    for record in records:
        conversation, problems = _to_conversation(record.value)
        if conversation is not None and tokenizer is not None and max_tokens is not None:
            problems = _too_long(conversation, tokenizer, max_tokens)
        if problems or conversation is None:
            issues.append(record.issue(problems))
        else:
            good.append((record.number, conversation))
    return good, sorted(issues, key=lambda i: i.line)


def parse_conversation_lines(
    data: Data,
    source_name: str,
    *,
    tokenizer: Any = None,
    max_tokens: int | None = None,
    json_array: bool | None = None,
) -> list[Conversation]:
    """Chat (or Alpaca) records → Conversations, or DatasetFormatError listing every bad line.

    `json_array`: True = the data is one JSON array (a .json file); None = detect it.
    With `tokenizer` and `max_tokens`, conversations longer than the model allows are bad lines.
    """
    good, issues = collect_conversations(data, source_name, tokenizer=tokenizer,
                                         max_tokens=max_tokens, json_array=json_array)
    _raise_if(issues, source_name)
    if not good:
        raise _no_records(source_name)
    return [conversation for _, conversation in good]


def parse_prompt_lines(
    data: Data, source_name: str, *, id_prefix: str | None = None, json_array: bool | None = None
) -> list[PromptItem]:
    """Prompt records (`{"prompt", "id"?, "category"?}`, Alpaca or chat) → PromptItems.

    Missing ids become `{id_prefix}-{index:04d}` (0-based position), stable while the file is.
    """
    prefix = id_prefix or Path(source_name).stem
    records, issues = read_records(data, json_array)
    items: list[PromptItem] = []
    first_seen: dict[str, int] = {}
    for record in records:
        parsed, problems = _to_prompt(record.value)
        if parsed is None:
            issues.append(record.issue(problems))
            continue
        prompt, ident, category = parsed
        ident = str(ident) if ident is not None else f"{prefix}-{len(items):04d}"
        if ident in first_seen:
            unit = "item" if record.in_array else "line"
            clash = f"duplicate id {ident!r} (first used on {unit} {first_seen[ident]})"
            issues.append(record.issue([f"{clash}; ids must be unique within a prompt set"]))
            continue
        first_seen[ident] = record.number
        items.append(PromptItem(id=ident, prompt=prompt, category=category, source=source_name))
    _raise_if(issues, source_name)
    if not items:
        raise _no_records(source_name)
    return items


def _read_file(path: str | PathLike[str]) -> tuple[bytes, bool | None]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataFileNotFoundError(f"dataset file not found: {path}")
    return path.read_bytes(), (True if path.suffix.lower() == ".json" else None)


def load_conversations_jsonl(
    path: str | PathLike[str], *, tokenizer: Any = None, max_tokens: int | None = None
) -> list[Conversation]:
    """Read a .jsonl file (or a .json array) of chat or Alpaca records.

    See parse_conversation_lines.
    """
    data, json_array = _read_file(path)
    return parse_conversation_lines(data, str(path), tokenizer=tokenizer, max_tokens=max_tokens,
                                    json_array=json_array)


def collect_conversations_file(
    path: str | PathLike[str], *, tokenizer: Any = None, max_tokens: int | None = None
) -> tuple[list[tuple[int, Conversation]], list[LineIssue]]:
    """`collect_conversations` for a file: numbered good rows and the issues of bad ones."""
    data, json_array = _read_file(path)
    return collect_conversations(data, str(path), tokenizer=tokenizer, max_tokens=max_tokens,
                                 json_array=json_array)


def load_prompts_jsonl(path: str | PathLike[str], *, source: str | None = None) -> list[PromptItem]:
    """Read a prompt set from a .jsonl file (or a .json array); see parse_prompt_lines."""
    data, json_array = _read_file(path)
    return parse_prompt_lines(data, source or str(path), id_prefix=Path(path).stem,
                              json_array=json_array)

