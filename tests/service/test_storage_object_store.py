"""`FsspecArtifactStore` against a real S3-compatible server (moto's server process): whole
objects or none, prefix listing and deletion, verified local copies, presigned URLs, and keys
that cannot leave the store."""

from __future__ import annotations

import hashlib
import itertools

import httpx
import pytest

from app.storage import LocalArtifactStore, check_key
from app.storage.remote import FsspecArtifactStore

_prefix = itertools.count()


@pytest.fixture
def store(s3_server, tmp_path, monkeypatch) -> FsspecArtifactStore:
    for key, value in s3_server.credentials.items():
        monkeypatch.setenv(key, value)
    return FsspecArtifactStore(f"s3://{s3_server.bucket}/unit-{next(_prefix)}", tmp_path / "cache",
                               endpoint_url=s3_server.endpoint_url, presign_s=60)


def test_put_open_list_and_delete_a_prefix(store, tmp_path):
    size, sha = store.put("files/org-a/f1.jsonl", [b"line one\n", b"line two\n"])
    assert (size, sha) == (18, hashlib.sha256(b"line one\nline two\n").hexdigest())
    with store.open("files/org-a/f1.jsonl") as f:
        assert f.read() == b"line one\nline two\n"
    folder = tmp_path / "peft"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"\0" * 3000)
    assert store.put_tree("adapters/job-1/a1/peft", folder) == 2
    assert store.list("adapters/job-1") == ["adapters/job-1/a1/peft/adapter_config.json",
                                            "adapters/job-1/a1/peft/sub/w.bin"]
    assert store.exists("adapters/job-1/a1/peft/sub/w.bin") and store.size(
        "adapters/job-1/a1/peft/sub/w.bin") == 3000
    store.delete("adapters/job-1")  # a prefix: every key under it
    assert store.list("adapters/job-1") == [] and not store.exists("adapters/job-1/a1/peft/sub/w.bin")
    store.delete("adapters/job-1")  # missing: no error
    assert store.exists("files/org-a/f1.jsonl")  # other keys untouched
    store.put("files/org-a/f1.jsonl.bak", [b"x"])
    store.delete("files/org-a/f1.jsonl")  # one key: not its neighbours sharing the prefix
    assert not store.exists("files/org-a/f1.jsonl")
    assert store.list("files/org-a") == ["files/org-a/f1.jsonl.bak"]


def test_a_failed_upload_leaves_no_object_and_no_spool_file(store):
    def chunks():
        yield b"half of a file"
        raise OSError("client went away")

    with pytest.raises(OSError, match="client went away"):
        store.put("files/org-a/broken.jsonl", chunks())
    assert not store.exists("files/org-a/broken.jsonl")
    assert list((store.cache_dir / ".uploads").iterdir()) == []


def test_local_copies_are_downloaded_once_and_refreshed_when_wrong(store):
    store.put("files/org-a/f2.jsonl", [b"0123456789"])
    local = store.local_file("files/org-a/f2.jsonl")
    assert local.read_bytes() == b"0123456789" and local.is_relative_to(store.cache_dir)
    local.write_bytes(b"012")  # a truncated copy (a crash mid-download) is not trusted
    assert store.local_file("files/org-a/f2.jsonl").read_bytes() == b"0123456789"
    with pytest.raises(FileNotFoundError):
        store.local_file("files/org-a/missing.jsonl")
    store.put("adapters/j/a/peft/x.json", [b"{}"])
    tree = store.local_tree("adapters/j/a/peft")
    assert (tree / "x.json").read_bytes() == b"{}"


def test_presigned_urls_serve_the_object_without_credentials(store):
    store.put("adapters/j/a/adapter.tar.gz", [b"archive bytes"])
    url = store.download_url("adapters/j/a/adapter.tar.gz", 'attachment; filename="a.tar.gz"',
                             "application/gzip")
    reply = httpx.get(url)  # no AWS credentials: the signature in the URL is the permission
    assert reply.status_code == 200 and reply.content == b"archive bytes"
    assert reply.headers["content-disposition"] == 'attachment; filename="a.tar.gz"'
    assert httpx.get(url.replace("adapter.tar.gz", "other.tar.gz")).status_code == 403


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../other-org/f.jsonl", "files/../../x",
                                 "files//x", "files/./x", "files\\x", "files/x\x00"])
def test_keys_that_would_leave_the_store_are_refused(store, tmp_path, key):
    with pytest.raises(ValueError, match="escapes the store"):
        check_key(key)
    with pytest.raises(ValueError, match="escapes the store"):
        store.put(key, [b"x"])
    with pytest.raises(ValueError, match="escapes the store"):
        LocalArtifactStore(tmp_path / "local").path(key)


def test_the_work_dir_mirror_restores_whole_snapshots_only(store, tmp_path, monkeypatch):
    from workers.workdir import WorkDirMirror

    a = tmp_path / "host-a"
    (a / "checkpoints" / "step-3").mkdir(parents=True)
    (a / "checkpoints" / "step-3" / "w.bin").write_bytes(b"weights at 3")
    (a / "steps.log").write_text("1\n2\n3\n")
    (a / ".lock").write_text("")  # dot-named: never mirrored
    first = WorkDirMirror(store, "job-m", a)
    first.push()

    # a push interrupted before its manifest (the worker died): blobs up, snapshot not
    (a / "steps.log").write_text("1\n2\n3\n4\n5\n6\n")
    (a / "checkpoints" / "step-6").mkdir()
    (a / "checkpoints" / "step-6" / "w.bin").write_bytes(b"weights at 6")
    real_put = store.put
    monkeypatch.setattr(store, "put", lambda key, chunks: (_ for _ in ()).throw(OSError("died")))
    first.push()  # logged, not raised: the job goes on
    monkeypatch.setattr(store, "put", real_put)
    b = tmp_path / "host-b"
    assert WorkDirMirror(store, "job-m", b).restore() == 2
    assert (b / "steps.log").read_text() == "1\n2\n3\n"  # not the newer log of the failed push
    assert not (b / "checkpoints" / "step-6").exists() and not (b / ".lock").exists()

    # host B goes on and pushes; host A, holding an older generation, takes the newer state
    (b / "checkpoints" / "step-3").rename(b / "checkpoints" / "step-9")  # a rotated checkpoint
    (b / "steps.log").write_text("1\n2\n3\n7\n8\n9\n")
    WorkDirMirror(store, "job-m", b).push()
    assert WorkDirMirror(store, "job-m", a).restore() == 2
    assert (a / "steps.log").read_text() == "1\n2\n3\n7\n8\n9\n"
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == ["step-9"]
    assert WorkDirMirror(store, "job-m", a).restore() == 0  # up to date: nothing fetched
    blobs = store.list("jobs/job-m/work")
    assert len(blobs) == 2  # unreferenced blobs (the old log, step-6's) are gone
    WorkDirMirror(store, "job-m", a).discard()
    assert store.list("jobs/job-m") == []
