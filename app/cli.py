"""The full `buckle` console script: the library's commands (`buckle.cli.main`) plus the
service's: `admin` (organizations and API keys), `api`, `worker` and `up` (everything embedded).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from buckle.cli.main import app
from buckle.cli.output import EXIT_DOMAIN, JsonFlag, emit

admin_app = typer.Typer(help="Organizations and API keys (run on the server).",
                        no_args_is_help=True)
app.add_typer(admin_app, name="admin")
console = Console(stderr=True)
out = Console()

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Embedded data root (SQLite, broker folder, artifacts); sets "
                       "BUCKLE_DATA_DIR. Default: $BUCKLE_HOME/service.")]


def _use_data_dir(data_dir: Path | None) -> None:
    if data_dir is not None:
        os.environ["BUCKLE_DATA_DIR"] = str(data_dir.expanduser().resolve())
    from app.core.config import get_settings

    get_settings.cache_clear()


def _migrate() -> None:
    from app.migrate import upgrade

    upgrade()


def _admin_session():
    _migrate()  # idempotent; the embedded database may not exist yet
    from app.core.db import new_session

    return new_session()


@admin_app.command("migrate")
def admin_migrate(data_dir: DataDir = None) -> None:
    """Create or upgrade the registry schema (alembic upgrade head)."""
    _use_data_dir(data_dir)
    _migrate()
    out.print("registry schema is at head")


@admin_app.command("create-org")
def admin_create_org(name: str, data_dir: DataDir = None) -> None:
    """Create an organization; prints its id."""
    from app.services.orgs import AdminError, create_org

    _use_data_dir(data_dir)
    with _admin_session() as session:
        try:
            org = create_org(session, name)
        except AdminError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=EXIT_DOMAIN) from None
    out.print(org.id)


@admin_app.command("create-key")
def admin_create_key(org: Annotated[str, typer.Argument(help="Organization id or name.")],
                     name: Annotated[str, typer.Option(help="A label for the key.")] = "",
                     data_dir: DataDir = None) -> None:
    """Create an API key for an organization; prints the key (shown only this once)."""
    from app.services.orgs import AdminError, create_key

    _use_data_dir(data_dir)
    with _admin_session() as session:
        try:
            created = create_key(session, org, name)
        except AdminError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=EXIT_DOMAIN) from None
    console.print(f"key {created.id} for {created.org_id} (store it now: only its hash is kept)")
    out.print(created.key)


@admin_app.command("list-orgs")
def admin_list_orgs(data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Organizations and their keys (prefixes only)."""
    from app.services.orgs import list_orgs

    _use_data_dir(data_dir)
    table = Table("org id", "name", "keys")
    rows = []
    with _admin_session() as session:
        for org, keys in list_orgs(session):
            shown = ", ".join(f"{k.id} ({k.prefix}…{' revoked' if k.revoked_at else ''})"
                              for k in keys) or "-"
            table.add_row(org.id, org.name, shown)
            rows.append({"id": org.id, "name": org.name, "keys": [
                {"id": k.id, "prefix": k.prefix, "revoked": k.revoked_at is not None}
                for k in keys]})
    emit(rows, table, as_json)


@admin_app.command("revoke-key")
def admin_revoke_key(key_id: str, data_dir: DataDir = None) -> None:
    """Revoke an API key by its id (key-…); API processes stop accepting it within
    BUCKLE_AUTH_CACHE_S seconds."""
    from app.services.orgs import AdminError, revoke_key

    _use_data_dir(data_dir)
    with _admin_session() as session:
        try:
            revoke_key(session, key_id)
        except AdminError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(code=EXIT_DOMAIN) from None
    out.print(f"revoked {key_id}")


def api_command(host: str, port: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "app.main:app", "--host", host, "--port", str(port),
            "--workers", str(workers), "--no-access-log", "--log-level", "warning"]


def worker_command(queues: str, concurrency: int, name: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "worker",
            "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


@app.command("api")
def api_cmd(host: str = "127.0.0.1", port: int = 8000,
            workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
            data_dir: DataDir = None) -> None:
    """Serve the HTTP API (uvicorn)."""
    _use_data_dir(data_dir)
    os.execv(sys.executable, api_command(host, port, workers))


@app.command("worker")
def worker_cmd(queues: Annotated[str, typer.Option(help="train (GPU work), default (light), "
                                                        "or both: train,default")] = "train",
               concurrency: int = 1, data_dir: DataDir = None) -> None:
    """Run a Celery worker."""
    _use_data_dir(data_dir)
    os.execv(sys.executable, worker_command(queues, concurrency, queues.replace(",", "-")))


def light_worker_env(env: dict[str, str]) -> dict[str, str]:
    """The embedded light worker (validation, screening) computes on one torch thread unless the
    operator chose a count; the training worker keeps every core. Both on one thread made a
    hardened job 1.5x slower on a 2-core VM (530 vs 358 s, docs/benchmarks.md), and the light
    queue's work is short and mostly runs before training starts."""
    if env.get("BUCKLE_TORCH_THREADS") or env.get("OMP_NUM_THREADS"):
        return env
    return dict(env, BUCKLE_TORCH_THREADS="1")


@app.command("up")
def up(host: str = "127.0.0.1", port: int = 8000, data_dir: DataDir = None,
       api_workers: int = 1) -> None:
    """Everything embedded, no servers: SQLite registry, filesystem broker, local artifacts,
    the API and two workers (train + default). Ctrl-C stops all of it."""
    _use_data_dir(data_dir)
    from app.core.config import get_settings

    settings = get_settings()
    _migrate()
    env = dict(os.environ, BUCKLE_DATA_DIR=str(settings.resolved_data_dir))
    procs = [subprocess.Popen(cmd, env=e) for cmd, e in (
        (api_command(host, port, api_workers), env),
        (worker_command("train", 1, "train"), env),
        (worker_command("default", 1, "default"), light_worker_env(env)))]
    console.print(f"Buckle is up: http://{host}:{port} (docs: /docs), data in "
                  f"{settings.resolved_data_dir}. Ctrl-C to stop.")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    failed = [p.args[2:4] for p in procs if p.returncode not in (0, -15, None) and not stopping]
    if failed:
        console.print(f"[bold red]stopped because a process exited:[/] {failed}")
        raise typer.Exit(1)


def main() -> None:  # console entry point
    app()


if __name__ == "__main__":
    main()
