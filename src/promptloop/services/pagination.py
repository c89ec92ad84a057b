"""Cursor pagination by a unique sort key: the cursor encodes the last row's key, so pages stay
stable while rows are inserted."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from promptloop.core.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200
_BAD_CURSOR = "The cursor is not valid: pass the next_cursor value of a previous page unchanged."


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the cursor of the next page (None on the last page)."""

    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(key: int | str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type[int] | type[str]) -> int | str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))["k"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidInput(_BAD_CURSOR) from None
    if type(key) is not kind:
        raise InvalidInput(_BAD_CURSOR)
    if isinstance(key, int) and not 0 <= key <= 2**63 - 1:
        raise InvalidInput(_BAD_CURSOR)
    if isinstance(key, str) and len(key) > 1000:
        raise InvalidInput(_BAD_CURSOR)
    result: int | str = key
    return result


def paginate(
    session: Session,
    query: Select[T],
    *,
    key: InstrumentedAttribute[Any],
    cursor: str | None,
    limit: int,
    descending: bool,
) -> Page[T]:
    """One page of `query` ordered by `key`, a unique integer or string column of its rows."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}.")
    kind: type[int] | type[str] = int if key.type.python_type is int else str
    if cursor is not None:
        last = decode_cursor(cursor, kind)
        query = query.where(key < last if descending else key > last)
    query = query.order_by(key.desc() if descending else key.asc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(getattr(rows[-1], key.key)) if more and rows else None
    return Page(items=rows, next_cursor=next_cursor)
