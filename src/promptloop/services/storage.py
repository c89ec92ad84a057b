"""Small storage idioms the services share."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

T = TypeVar("T")


def insert_or_get(session: Session, row: T, existing: Select[T]) -> tuple[T, bool]:
    """Insert `row`, or return the row `existing` finds if a unique constraint says it is there.

    Concurrent inserts of the same key leave exactly one row: the loser's insert fails inside a
    savepoint and it reads the winner's committed row instead.
    """
    found = session.scalars(existing).first()
    if found is not None:
        return found, False
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = session.scalars(existing).first()
        if found is None:
            raise
        return found, False
    return row, True
