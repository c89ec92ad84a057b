"""indexes for the logs and monitoring pages

The monitoring page reads a window of logs from one covering index (its time, version,
environment, latency, tokens and cost), which replaces the plain (project_id, created_at) one;
failed calls have a partial index of their own; the logs page filters by end user through an
index. Measured with bench/ui.py on 100,000 logs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SPLIT = ["prompt_id", "version_pk", "environment"]
_MONITORED = [*_SPLIT, "latency_ms", "prompt_tokens", "output_tokens", "cost"]
_FAILED = sa.text("error IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index("ix_logs_project_id_created_at")
        batch_op.create_index("ix_logs_monitoring", ["project_id", "created_at", *_MONITORED])
        batch_op.create_index(
            "ix_logs_project_id_errors",
            ["project_id", "created_at", *_SPLIT],
            sqlite_where=_FAILED,
            postgresql_where=_FAILED,
        )
        batch_op.create_index("ix_logs_project_id_end_user_id", ["project_id", "end_user", "id"])


def downgrade() -> None:
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index("ix_logs_project_id_end_user_id")
        batch_op.drop_index("ix_logs_project_id_errors")
        batch_op.drop_index("ix_logs_monitoring")
        batch_op.create_index("ix_logs_project_id_created_at", ["project_id", "created_at"])
