"""Alembic environment: runs on the connection that `Database.migrate` hands over."""

from __future__ import annotations

from alembic import context

from promptloop.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through promptloop (Database.migrate), not the alembic CLI.")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
