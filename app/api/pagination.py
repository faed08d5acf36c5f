"""One shape for every cursor-paginated list response (`first_id`, `last_id`, `has_more`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from app.schemas.common import CursorListPublic

L = TypeVar("L", bound=CursorListPublic)


def page(cls: type[L], data: Sequence[Any], has_more: bool) -> L:
    return cls(data=list(data), has_more=has_more, first_id=data[0].id if data else None,
               last_id=data[-1].id if data else None)
