"""gateway: one ledger row per generation id (the ledger write is idempotent)

Ledgers written before this revision may hold a generation twice (a batch retried after its commit's
acknowledgement was lost). The upgrade keeps the first row of each generation id, deletes the others and gives
their cost back to the key (its spend, and its budget period's spend where the row counted in the current
period), then makes the generation id unique.

Revision ID: gateway_0003
Revises: gateway_0002
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "gateway_0003"
down_revision = "gateway_0002"
branch_labels = None
depends_on = None

DUPLICATES = sa.text(
    "SELECT u.id, u.key_id, u.cost_usd, u.created_at FROM gateway_usage u WHERE EXISTS "
    "(SELECT 1 FROM gateway_usage earlier WHERE earlier.generation_id = u.generation_id AND earlier.id < u.id)"
)


def _refund(dialect: str) -> sa.TextClause:
    """Give a deleted row's cost back to its key (never below zero in the budget period)."""
    greatest = "MAX" if dialect == "sqlite" else "GREATEST"
    return sa.text(
        "UPDATE gateway_api_keys SET spent_usd = spent_usd - :cost, period_spent_usd = CASE "
        f"WHEN period_start IS NOT NULL AND :created_at >= period_start THEN {greatest}(period_spent_usd - :cost, 0) "
        "ELSE period_spent_usd END WHERE id = :key_id"
    )


def upgrade() -> None:
    bind = op.get_bind()
    refund = _refund(bind.dialect.name)
    for row_id, key_id, cost, created_at in bind.execute(DUPLICATES).all():
        bind.execute(refund, {"cost": cost, "created_at": created_at, "key_id": key_id})
        bind.execute(sa.text("DELETE FROM gateway_usage WHERE id = :id"), {"id": row_id})
    op.drop_index("ix_gateway_usage_generation_id", table_name="gateway_usage")
    op.create_index("ix_gateway_usage_generation_id", "gateway_usage", ["generation_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_gateway_usage_generation_id", table_name="gateway_usage")
    op.create_index("ix_gateway_usage_generation_id", "gateway_usage", ["generation_id"])
