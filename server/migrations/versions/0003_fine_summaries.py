"""Fine chunk summaries: per 16-step block min/max records for fast downsampled reads.

Rows written before this revision keep ``fine_summary = NULL``; reads compute it from the
chunk's points (as slow as before for those rows), and the next ingest into the chunk stores it.

Revision ID: 0003_fine_summaries
Revises: 0002_alerts
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_fine_summaries"
down_revision: str | Sequence[str] | None = "0002_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("point_chunks") as batch:
        batch.add_column(sa.Column("fine_summary", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("point_chunks") as batch:
        batch.drop_column("fine_summary")
