"""OpenAI-style ids (`file-…`, `ftjob-…`) that sort by creation time.

48 bits of milliseconds then 48 random bits, in hex: ordering by id is ordering by creation (to the
millisecond), which is what cursor pagination (`after=<id>`) needs, with no extra column.
"""

from __future__ import annotations

import hashlib
import secrets
import time


def new_id(prefix: str) -> str:
    return f"{prefix}-{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def new_api_key() -> str:
    return "bk-" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys are 256-bit random strings, not passwords: a plain sha256 cannot be brute-forced
    # and keeps each request's lookup a single indexed equality.
    return hashlib.sha256(key.encode()).hexdigest()
