"""Cursor pagination: an opaque cursor that encodes the last row's id, stable under inserts."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from promptloop.core.errors import InvalidInput

T = TypeVar("T")


class _HasId(Protocol):
    id: int


R = TypeVar("R", bound=_HasId)
MAX_LIMIT = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results and the cursor of the next page (None on the last page)."""

    items: Sequence[T]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"id": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["id"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidInput(
            "The cursor is not valid: pass the next_cursor value of a previous page unchanged."
        ) from None
    if not isinstance(value, int):
        raise InvalidInput(
            "The cursor is not valid: pass the next_cursor value of a previous page unchanged."
        )
    return value


def paginate(
    session: Session,
    query: Select[R],
    *,
    id_column: InstrumentedAttribute[int],
    cursor: str | None,
    limit: int,
    newest_first: bool,
) -> Page[R]:
    """Run `query` for one page of rows ordered by their integer `id_column`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}.")
    if cursor is not None:
        last = decode_cursor(cursor)
        query = query.where(id_column < last if newest_first else id_column > last)
    query = query.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=rows, next_cursor=encode_cursor(rows[-1].id) if more and rows else None)
