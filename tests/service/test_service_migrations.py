"""One set of Alembic migrations creates both SQLite and PostgreSQL; `alembic check` is clean."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT


def _alembic(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alembic", *args], cwd=ROOT,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_upgrade_check_downgrade(kind, tmp_path, postgres):
    env = {"BUCKLE_DATA_DIR": str(tmp_path)}
    if kind == "postgres":
        env["BUCKLE_DATABASE_URL"] = postgres.create_database(f"mig_{tmp_path.name[-8:]}"
                                                              .replace("-", "_").lower())
    for args in (("upgrade", "head"), ("check",), ("downgrade", "base"), ("upgrade", "head")):
        result = _alembic(env, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "No new upgrade operations detected" in _alembic(env, "check").stdout
