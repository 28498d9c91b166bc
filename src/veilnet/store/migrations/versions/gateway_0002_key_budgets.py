"""gateway: spending budgets per API key that reset daily, weekly or monthly

Revision ID: gateway_0002
Revises: gateway_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("gateway_api_keys", sa.Column("budget_usd", sa.Float, nullable=True))
    op.add_column("gateway_api_keys", sa.Column("budget_reset", sa.String(16), nullable=True))
    op.add_column("gateway_api_keys", sa.Column("period_start", sa.Float, nullable=True))
    op.add_column("gateway_api_keys",
                  sa.Column("period_spent_usd", sa.Float, nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("gateway_api_keys") as batch:
        for column in ("period_spent_usd", "period_start", "budget_reset", "budget_usd"):
            batch.drop_column(column)
