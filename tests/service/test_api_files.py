"""Files: uploads are validated whole; a rejected upload leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from servicekit import GOOD_JSONL, chat, jsonl, upload


def _stored_files(stack) -> list[Path]:
    root = Path(stack.env["BUCKLE_DATA_DIR"]) / "artifacts" / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_valid_upload_is_stored_listed_and_downloadable(client, org):
    r = upload(client, org)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["id"].startswith("file-") and f["object"] == "file"
    assert f["purpose"] == "fine-tune" and f["records"] == 8 and f["bytes"] == len(GOOD_JSONL)
    listed = client.get("/v1/files", headers=org.headers).json()
    assert [x["id"] for x in listed["data"]] == [f["id"]]
    assert client.get(f"/v1/files/{f['id']}", headers=org.headers).json() == f
    content = client.get(f"/v1/files/{f['id']}/content", headers=org.headers)
    assert content.content == GOOD_JSONL


def test_malformed_jsonl_is_rejected_with_every_bad_line_numbered(client, org, stack):
    before = _stored_files(stack)
    bad = (jsonl([chat("hi", "hello")]) + b'{"messages": [{"role": "user"}]}\n'
           + b"not json\n" + jsonl([chat("q", "a")]))
    r = upload(client, org, bad)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_file_format" and err["param"] == "file"
    assert "line 2" in err["message"] and "line 3" in err["message"]
    assert "line 1:" not in err["message"]
    assert client.get("/v1/files", headers=org.headers).json()["data"] == []
    assert _stored_files(stack) == before


def test_empty_file_is_rejected(client, org):
    r = upload(client, org, b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]


def test_wrong_purpose_is_rejected(client, org, stack):
    before = _stored_files(stack)
    r = upload(client, org, purpose="assistants")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "purpose" and "fine-tune" in err["message"]
    assert client.get("/v1/files", headers=org.headers).json()["data"] == []
    assert _stored_files(stack) == before


def test_missing_purpose_is_a_clear_400(client, org):
    r = client.post("/v1/files", headers=org.headers,
                    files={"file": ("t.jsonl", GOOD_JSONL, "application/jsonl")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"


def test_oversize_upload_is_rejected(client, org, stack):
    limit = int(stack.env["BUCKLE_MAX_UPLOAD_BYTES"])
    line = jsonl([chat("x" * 200, "y" * 200)])
    just_over = line * (limit // len(line) + 1)  # over the limit, under the framing slack
    way_over = line * (2 * limit // len(line))  # refused from Content-Length alone
    for content in (just_over, way_over):
        r = upload(client, org, content)
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "file_too_large"
    assert client.get("/v1/files", headers=org.headers).json()["data"] == []


def test_evals_purpose_takes_prompt_sets(client, org):
    r = upload(client, org, jsonl([{"prompt": "How do I bake bread?"}]), purpose="evals")
    assert r.status_code == 200 and r.json()["records"] == 1


def test_delete_removes_row_and_content(client, org, stack):
    f = upload(client, org).json()
    r = client.delete(f"/v1/files/{f['id']}", headers=org.headers)
    assert r.json() == {"id": f["id"], "object": "file", "deleted": True}
    assert client.get(f"/v1/files/{f['id']}", headers=org.headers).status_code == 404
    assert not any(f["id"] in p.name for p in _stored_files(stack))


def test_list_is_paginated_newest_first(client, org):
    ids = [upload(client, org).json()["id"] for _ in range(3)]
    page = client.get("/v1/files?limit=2", headers=org.headers).json()
    assert [f["id"] for f in page["data"]] == ids[::-1][:2] and page["has_more"]
    rest = client.get(f"/v1/files?limit=2&after={page['last_id']}", headers=org.headers).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]] and not rest["has_more"]
