"""Service fixtures: a real PostgreSQL and a real Redis started once per session, the embedded
stack (SQLite + filesystem broker), live API/worker processes, organizations with API keys.

Servers come from the Debian packages that `.ci/run` installs (see app/devservers.py); when
they are missing the tests fail with the command to install them, rather than skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from servicekit import Org, make_org

from app.devservers import ServerUnavailable, free_port, start_postgres, start_redis, start_s3

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
_redis_db = itertools.count(1)
_pg_db = itertools.count(1)


@pytest.fixture(scope="session")
def postgres():
    try:
        server = start_postgres()
    except ServerUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    try:
        server = start_redis()
    except ServerUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto's), one bucket; each test uses its own prefix."""
    try:
        server = start_s3()
    except ServerUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@dataclass
class Stack:
    """One deployment's configuration: `embedded` (SQLite + filesystem broker) or `production`
    (PostgreSQL + Redis). `env` is what its processes get."""

    kind: str
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)
    api_url: str | None = None

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for key in ("BUCKLE_DATABASE_URL", "BUCKLE_BROKER_URL"):
            monkeypatch.delenv(key, raising=False)
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        _reset_caches()

    def process_env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **self.env, **extra}  # a test may override a stack setting
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT)])
        env.setdefault("BUCKLE_PIPELINE", "fake_pipeline:run")
        return env

    def start_api(self, workers: int = 1, **extra: str) -> str:
        port = free_port()
        log = open(Path(self.env["BUCKLE_DATA_DIR"]) / f"api-{port}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(workers), "--no-access-log"],
            cwd=ROOT, env=self.process_env(**extra), stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"API exited: {Path(log.name).read_text()[-2000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    self.api_url = url
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("API did not start")

    def start_worker(self, queues: str = "train,default", name: str = "w",
                     **extra: str) -> subprocess.Popen:
        log = open(Path(self.env["BUCKLE_DATA_DIR"]) / f"worker-{name}.log", "a")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "worker",
             "-Q", queues, "-c", "1", "-n", f"{name}-{len(self.procs)}@%h", "--loglevel",
             "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.process_env(**extra), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the whole process group: the worker and its pool children die at once."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        # Workers are killed outright: a warm shutdown takes seconds per worker and proves
        # nothing here (every job of the test has finished or been abandoned by then).
        for proc in self.procs:
            if proc.poll() is None:
                if proc.args[2] == "celery":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()


def _reset_caches() -> None:
    from app.core.config import get_settings
    from app.services.orgs import key_cache

    get_settings.cache_clear()
    key_cache._entries.clear()


def _migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, check=True,
                   env=dict(os.environ, **env), capture_output=True)


def new_stack(kind: str, base: Path, postgres=None, redis_server=None) -> Stack:
    data = base / f"{kind}-{next(_pg_db)}"
    data.mkdir(parents=True)
    env = {"BUCKLE_DATA_DIR": str(data), "BUCKLE_MAX_UPLOAD_BYTES": str(64 * 1024),
           "BUCKLE_LEASE_TTL_S": "3", "BUCKLE_RECONCILE_INTERVAL_S": "1",
           "BUCKLE_CANCEL_POLL_S": "0.2", "BUCKLE_EVENT_THROTTLE_S": "0",
           "BUCKLE_AUTH_CACHE_S": "0"}
    if kind == "production":
        name = f"buckle_{data.name.replace('-', '_')}"
        env["BUCKLE_DATABASE_URL"] = postgres.create_database(name)
        env["BUCKLE_BROKER_URL"] = redis_server.url(next(_redis_db))
    _migrate(env)
    return Stack(kind=kind, env=env)


@pytest.fixture(scope="session")
def stacks(tmp_path_factory, postgres, redis_server) -> dict[str, Stack]:
    base = tmp_path_factory.mktemp("stacks")
    return {kind: new_stack(kind, base, postgres, redis_server)
            for kind in ("embedded", "production")}


@pytest.fixture(params=["embedded", "production"])
def stack(request, stacks, monkeypatch) -> Stack:
    """The API in-process (TestClient) against each deployment's real database and broker."""
    s = stacks[request.param]
    s.apply(monkeypatch)
    return s


@pytest.fixture
def fresh_stack(request, tmp_path, postgres, redis_server, monkeypatch) -> Iterator[Stack]:
    """A stack of its own (database, broker db, data dir) for tests that start processes."""
    kind = getattr(request, "param", "production")
    s = new_stack(kind, tmp_path, postgres, redis_server)
    s.apply(monkeypatch)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory, postgres, redis_server) -> Iterator[Stack]:
    """One production stack with a live API for a whole module whose tests only need their own
    organization (each test makes one), not their own database: saves a migration and an API
    start per test."""
    with pytest.MonkeyPatch.context() as mp:
        s = new_stack("production", tmp_path_factory.mktemp("module"), postgres, redis_server)
        s.apply(mp)
        s.start_api()
        yield s
        s.stop()


@pytest.fixture
def client(stack):
    from fastapi.testclient import TestClient

    from app.main import app

    with TestClient(app) as c:
        yield c


@pytest.fixture
def org(stack) -> Org:
    return make_org()


@pytest.fixture
def other_org(stack) -> Org:
    return make_org()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless chromium (Debian's, with its chromedriver) driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium "
                    "chromium-driver (scripts/servers.sh does it)")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1366,900"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.downloads = downloads
    yield chrome
    chrome.quit()
