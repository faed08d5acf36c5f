"""Throwaway local PostgreSQL, Redis and S3-compatible servers for tests and benchmarks (no
Docker needed).

Binaries come from the Debian packages (`apt-get install postgresql redis-server`, what `.ci/run`
does) or from `BUCKLE_PG_BIN` / `BUCKLE_REDIS_SERVER`; the S3 server is moto's standalone server
(`moto[server]` from PyPI, a test dependency), a real HTTP endpoint speaking the S3 REST API. Each server gets its own data directory and
a free port on 127.0.0.1, and is stopped (and its directory removed) by `stop()`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The binaries are not installed; the message says how to install them."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    if os.environ.get("BUCKLE_PG_BIN"):
        return Path(os.environ["BUCKLE_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise ServerUnavailable("PostgreSQL not found: run `apt-get install -y postgresql` "
                                "(or `bash .ci/run`), or set BUCKLE_PG_BIN")
    return Path(found[-1]).parent


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; the Debian package creates a `postgres` user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresServer:
    port: int
    data_dir: Path
    bin_dir: Path
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        subprocess.run(_as_postgres_user([str(self.bin_dir / "createdb"), "-h", "127.0.0.1",
                                          "-p", str(self.port), "-U", "postgres", name]),
                       check=True, capture_output=True)
        return self.url(name)

    def stop(self) -> None:
        self.halt("immediate")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def halt(self, mode: str = "fast") -> None:
        """Stop the server process, keeping its data (chaos tests restart it with `start`)."""
        subprocess.run(_as_postgres_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir),
                                          "-m", mode, "-w", "stop"]), capture_output=True,
                       check=False)

    def start(self) -> None:
        opts = (f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(_as_postgres_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir),
                                          "-w", "-l", str(self.data_dir / "log"), "-o", opts,
                                          "start"]), check=True, capture_output=True)


def start_postgres() -> PostgresServer:
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="buckle-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust",
                                      "-U", "postgres", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    server = PostgresServer(port=port, data_dir=data, bin_dir=bin_dir)
    server.start()
    return server


def _redis_binary() -> str:
    found = os.environ.get("BUCKLE_REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise ServerUnavailable("redis-server not found: run `apt-get install -y redis-server` "
                                "(or `bash .ci/run`), or set BUCKLE_REDIS_SERVER")
    return found


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen
    work_dir: Path

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server (chaos tests start it again on the same port with `restart`)."""
        _terminate(self.process)

    def restart(self, appendonly: bool = False) -> None:
        self.process = _spawn_redis(self.port, self.work_dir, appendonly)


def _spawn_redis(port: int, work: Path, appendonly: bool = False) -> subprocess.Popen:
    proc = subprocess.Popen([_redis_binary(), "--bind", "127.0.0.1", "--port", str(port),
                             "--save", "", "--appendonly", "yes" if appendonly else "no",
                             "--dir", str(work), "--databases", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on port {port}")


def start_redis(appendonly: bool = False) -> RedisServer:
    """A throwaway Redis; `appendonly=True` keeps queued messages across a restart, as the
    compose file's Redis does."""
    work = Path(tempfile.mkdtemp(prefix="buckle-redis-"))
    port = free_port()
    return RedisServer(port=port, process=_spawn_redis(port, work, appendonly), work_dir=work)


@dataclass
class S3Server:
    """An S3-compatible endpoint (moto's server process) with one bucket made for the caller."""

    port: int
    process: subprocess.Popen
    bucket: str
    credentials: dict[str, str] = field(default_factory=lambda: {
        "AWS_ACCESS_KEY_ID": "buckle-test", "AWS_SECRET_ACCESS_KEY": "buckle-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1"})

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, prefix: str) -> dict[str, str]:
        """What a Buckle process needs to keep its artifacts under `s3://bucket/prefix`."""
        return {"BUCKLE_STORAGE_URL": f"s3://{self.bucket}/{prefix}",
                "BUCKLE_S3_ENDPOINT_URL": self.endpoint_url, **self.credentials}

    def stop(self) -> None:
        _terminate(self.process)


def _terminate(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def start_s3(bucket: str = "buckle") -> S3Server:
    import sys

    import httpx

    if shutil.which("moto_server") is None and not _has_module("moto.server"):
        raise ServerUnavailable("moto's S3 server is not installed: pip install 'moto[server]'")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server(port=port, process=proc, bucket=bucket)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            # PUT /bucket creates it (anonymous requests are accepted by moto)
            if httpx.put(f"{server.endpoint_url}/{bucket}", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the S3 server did not answer on port {port}")


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
