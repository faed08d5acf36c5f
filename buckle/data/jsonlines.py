"""Split a dataset file into numbered JSON values: JSONL lines, or the items of a JSON array.

Numbers are what users see in error messages, so they are 1-based file lines (blank lines count)
or, for a .json array, 1-based item positions. Undecodable bytes and bad JSON become issues here;
what the values must look like is `validation`'s job.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from buckle.errors import LineIssue

Data = bytes | str | Iterable[str | bytes]
"""A whole file (bytes or str) or its lines (e.g. a file opened in binary mode, so that
undecodable bytes are reported per line instead of raised by the file object)."""


@dataclass(frozen=True)
class Record:
    """One parsed JSON value and where it came from (1-based line, or item of a JSON array)."""

    number: int
    value: Any
    in_array: bool = False

    def issue(self, problems: list[str]) -> LineIssue:
        where = f"item {self.number} of the JSON array: " if self.in_array else ""
        return LineIssue(self.number, where + "; ".join(problems))


def json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} "
                      "of the line); re-save the file with UTF-8 encoding")


def _as_lines(data: Data) -> list[bytes]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes):
        data = data.removeprefix(codecs.BOM_UTF8)
        raw = data.split(b"\n")
    else:
        raw = [x.encode("utf-8") if isinstance(x, str) else x for x in data]
    return [line.rstrip(b"\r\n") for line in raw]


class _BadJSON(ValueError):
    """A value `json.loads` accepts (or chokes on) that a dataset must not contain."""


def _no_constants(name: str) -> Any:
    raise _BadJSON(f"{name} is not valid JSON (write a number or a string)")


def _check_text(value: Any) -> None:
    """Unpaired surrogate escapes ("\\ud800") parse but cannot be encoded as UTF-8 later."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise _BadJSON("a string holds an unpaired UTF-16 surrogate escape (e.g. "
                               "\\ud800); fix or drop that character") from None
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def loads(text: str) -> Any:
    """`json.loads` for untrusted files: every way it can fail is a ValueError with a message
    a user can act on (JSONDecodeError keeps its position). Python's own parser raises
    RecursionError on deep nesting and ValueError on 4,301+ digit integers; both used to escape
    as crashes."""
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _BadJSON("nested too deeply (over ~1,000 levels of [ or {); a record is a flat "
                       "object of messages") from None
    except _BadJSON:
        raise
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string ..."
        if "digits" in str(exc):
            raise _BadJSON("a number has more than 4,300 digits; write it as a string or "
                           "shorten it") from None
        raise _BadJSON(f"unreadable value: {exc}") from None
    _check_text(value)
    return value


def _read_array(data: bytes, strict: bool) -> tuple[list[Record], list[LineIssue]] | None:
    """A whole-file JSON array (Alpaca's usual shape). None: not an array, read it as JSONL."""
    data = data.removeprefix(codecs.BOM_UTF8)
    issues = [LineIssue(n, err) for n, line in enumerate(_as_lines(data), 1)
              if (err := _decode(line)[1])]
    if issues:
        return ([], issues) if strict else None
    try:
        doc = loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        if not strict:
            return None
        return [], [LineIssue(exc.lineno, (
            f"invalid JSON ({exc.msg} at column {exc.colno}); a .json file must hold one JSON "
            "array of records: fix the syntax, or use .jsonl with one record per line"))]
    except _BadJSON as exc:
        if not strict:
            return None
        return [], [LineIssue(1, f"invalid JSON array: {exc}")]
    if not isinstance(doc, list):
        if not strict:
            return None
        return [], [LineIssue(1, (
            f"a .json file must hold a JSON array of records, got a JSON {json_type(doc)}; "
            "wrap the records in [...] or use .jsonl with one record per line"))]
    return [Record(i, item, in_array=True) for i, item in enumerate(doc, 1)], []


def read_records(data: Data, json_array: bool | None) -> tuple[list[Record], list[LineIssue]]:
    """Split a file into JSON values; undecodable or unparsable lines become issues."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes) and json_array is not False:
        looks_like_array = data.removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"["
        if json_array or looks_like_array:
            parsed = _read_array(data, strict=bool(json_array))
            if parsed is not None:
                return parsed
    records: list[Record] = []
    issues: list[LineIssue] = []
    for number, raw in enumerate(_as_lines(data), 1):
        text, error = _decode(raw)
        if error or text is None:
            issues.append(LineIssue(number, error or "unreadable"))
            continue
        if not text.strip():
            continue  # blank lines are harmless; numbering still counts them
        try:
            records.append(Record(number, loads(text)))
        except json.JSONDecodeError as exc:
            issues.append(LineIssue(number, (
                f"invalid JSON ({exc.msg} at column {exc.colno}); each line must be one complete "
                "JSON object: check quotes, commas and brackets, and that no record spans lines")))
        except _BadJSON as exc:
            issues.append(LineIssue(number, f"invalid JSON: {exc}"))
    return records, issues
