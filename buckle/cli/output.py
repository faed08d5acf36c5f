"""What every `buckle` command shares: exit codes, error lines, `--json` output.

Exit codes (documented in the README):
  0  success
  1  a domain error: bad data (with line numbers), an unknown model or source, a failed job
  2  a usage error: unknown option, missing or malformed argument (click's own code)
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

EXIT_OK, EXIT_DOMAIN, EXIT_USAGE = 0, 1, 2

stderr = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: object) -> NoReturn:
    """Print `error: message` to stderr and exit with the domain-error code."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=EXIT_DOMAIN)


def emit(rows: Any, table: Table | None, as_json: bool) -> None:
    """JSON (machine-readable, stdout only) or the human table."""
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    elif table is not None:
        Console().print(table)


def buckle_version() -> str:
    try:
        return version("buckle")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def version_callback(value: bool) -> None:
    if value:
        print(f"buckle {buckle_version()}")
        raise typer.Exit(code=EXIT_OK)
