"""Every kind of bad upload we know of gets a 400 that names its line, and stores nothing.

Each case puts one good record on line 1 and the bad content on line 2 (or is a whole-file
problem reported at line 1), so the test can demand the exact line number. The catalogue is
what the robustness issue's fuzzer found (deep nesting, huge integers, a file of `[`) plus
every format rule of the two purposes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servicekit import chat, jsonl, upload

GOOD = json.dumps(chat("What is 2 + 2?", "2 + 2 = 4.")).encode()
PROMPT = b'{"prompt": "How do I bake bread?"}'


def _msgs(*messages) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


U = {"role": "user", "content": "hi"}
A = {"role": "assistant", "content": "hello"}

# (kind, purpose, content, line the message must name)
CASES: list[tuple[str, str, bytes, int]] = [
    ("file of [ characters", "fine-tune", b"[" * 1024, 1),
    ("file of { characters", "fine-tune", b"{" * 1024, 1),
    ("line nested 1000 deep", "fine-tune", GOOD + b"\n" + b"[" * 1000 + b"]" * 1000, 2),
    ("object nested 1000 deep", "fine-tune",
     GOOD + b"\n" + b'{"a":' * 1000 + b"1" + b"}" * 1000, 2),
    ("integer of 4301 digits", "fine-tune", GOOD + b'\n{"messages": ' + b"7" * 4301 + b"}", 2),
    ("integer of 4301 digits in a JSON array", "fine-tune", b"[" + b"7" * 4301 + b"]", 1),
    ("NaN constant", "fine-tune", GOOD + b'\n{"messages": NaN}', 2),
    ("Infinity constant", "fine-tune", GOOD + b'\n{"messages": [], "w": -Infinity}', 2),
    ("unpaired surrogate escape", "fine-tune",
     GOOD + b'\n{"messages": [{"role": "user", "content": "\\ud800"}, '
            b'{"role": "assistant", "content": "x"}]}', 2),
    ("invalid UTF-8", "fine-tune", GOOD + b"\n\xff\xfe{}", 2),
    ("NUL bytes", "fine-tune", GOOD + b"\n\x00\x00\x00", 2),
    ("truncated JSON", "fine-tune", GOOD + b'\n{"messages": [', 2),
    ("two objects on one line", "fine-tune", GOOD + b"\n" + GOOD + GOOD, 2),
    ("trailing comma", "fine-tune", GOOD + b'\n{"messages": [],}', 2),
    ("single quotes", "fine-tune", GOOD + b"\n{'messages': []}", 2),
    ("a JSON array line", "fine-tune", GOOD + b"\n[1, 2]", 2),
    ("a JSON number line", "fine-tune", GOOD + b"\n42", 2),
    ("a JSON string line", "fine-tune", GOOD + b'\n"text"', 2),
    ("a JSON null line", "fine-tune", GOOD + b"\nnull", 2),
    ("no messages key", "fine-tune", GOOD + b'\n{"text": "hi"}', 2),
    ("messages not a list", "fine-tune", GOOD + b'\n{"messages": "hi"}', 2),
    ("empty messages", "fine-tune", GOOD + b'\n{"messages": []}', 2),
    ("message not an object", "fine-tune", GOOD + b'\n{"messages": ["hi"]}', 2),
    ("message without role", "fine-tune", GOOD + b"\n" + _msgs({"content": "hi"}, A), 2),
    ("unknown role", "fine-tune",
     GOOD + b"\n" + _msgs({"role": "wizard", "content": "hi"}, A), 2),
    ("message without content", "fine-tune", GOOD + b"\n" + _msgs({"role": "user"}, A), 2),
    ("content a number", "fine-tune",
     GOOD + b"\n" + _msgs({"role": "user", "content": 5}, A), 2),
    ("no assistant reply", "fine-tune", GOOD + b"\n" + _msgs(U), 2),
    ("deeply nested content", "fine-tune",
     GOOD + b"\n" + b'{"messages": [{"role": "user", "content": ' + b"[" * 900 + b"]" * 900
     + b"}]}", 2),
    ("JSON array file with a bad item", "fine-tune",
     b"[" + GOOD + b', {"messages": "x"}]', 2),
    ("alpaca record without output", "fine-tune",
     GOOD + b'\n{"instruction": "Say hi", "input": ""}', 2),
    ("empty file", "fine-tune", b"", 1),
    ("only blank lines", "fine-tune", b"\n\n\n", 1),
    ("evals: no prompt key", "evals", PROMPT + b'\n{"question": "hi"}', 2),
    ("evals: prompt a number", "evals", PROMPT + b'\n{"prompt": 3}', 2),
    ("evals: empty prompt", "evals", PROMPT + b'\n{"prompt": ""}', 2),
    ("evals: nested 1000 deep", "evals", PROMPT + b"\n" + b"[" * 1000, 2),
    ("evals: integer of 5000 digits", "evals", PROMPT + b'\n{"prompt": ' + b"1" * 5000 + b"}",
     2),
    ("evals: invalid UTF-8", "evals", PROMPT + b"\n\xc3\x28", 2),
]


def _stored(stack) -> list[Path]:
    root = Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "files"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(("kind", "purpose", "content", "line"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_upload_is_a_400_naming_the_line(client, org, stack, kind, purpose, content, line):
    before = _stored(stack)
    r = upload(client, org, content, purpose=purpose)
    assert r.status_code == 400, (kind, r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["param"] == "file", err
    assert f"line {line}" in err["message"], (kind, err["message"][:400])
    assert client.get("/v1/files", headers=org.headers).json()["data"] == []
    assert _stored(stack) == before


def test_catalogue_size():
    assert len(CASES) >= 37  # the 37 bad-content kinds the fuzzer tried, and more


def test_two_file_parts_or_two_purposes_are_refused(client, org):
    good = jsonl([chat("q", "a")])
    r = client.post("/v1/files", headers=org.headers, data={"purpose": "fine-tune"},
                    files=[("file", ("a.jsonl", good)), ("file", ("b.jsonl", good))])
    assert r.status_code == 400 and r.json()["error"]["param"] == "file", r.text
    assert r.json()["error"]["code"] == "duplicate_form_field"
    r = client.post("/v1/files", headers=org.headers,
                    data={"purpose": ["fine-tune", "evals"]}, files={"file": ("a.jsonl", good)})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose", r.text
    assert client.get("/v1/files", headers=org.headers).json()["data"] == []


def test_a_file_part_without_filename_gets_a_usable_message(client, org):
    r = client.post("/v1/files", headers=org.headers, data={"purpose": "fine-tune"},
                    files={"file": ("", b'{"messages": []}')})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "file" and "filename" in err["message"], err
    assert "UploadFile" not in err["message"] and "class" not in err["message"]


def test_stored_content_missing_on_disk_is_a_404(client, org, stack):
    from app.core.db import session_scope
    from app.models import File
    from app.storage import get_store

    f = upload(client, org).json()["id"]
    with session_scope() as session:
        path = get_store().path(session.get(File, f).storage_key)
    path.unlink()
    r = client.get(f"/v1/files/{f}/content", headers=org.headers)
    assert r.status_code == 404, r.text
    assert str(path) not in r.text and r.json()["error"]["code"] == "file_content_not_found"
