from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from promptloop import __version__
from promptloop.api.deps import DbDep
from promptloop.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and database check; needs no credentials")
def health(db: DbDep) -> Health:
    with db.session(write=False) as session:
        session.execute(text("SELECT 1"))
    return Health(status="ok", version=__version__, database=db.url.get_backend_name())
