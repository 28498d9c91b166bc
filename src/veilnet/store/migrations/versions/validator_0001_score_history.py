"""validator: score history

Revision ID: validator_0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "validator_0001"
down_revision = None
branch_labels = ("validator",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "validator_score_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("validator", sa.String(64), nullable=False),
        sa.Column("netuid", sa.Integer, nullable=False),
        sa.Column("tempo", sa.Integer, nullable=False),
        sa.Column("block", sa.Integer, nullable=False),
        sa.Column("miner", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("quality", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_validator_score_history_miner", "validator_score_history", ["miner"])


def downgrade() -> None:
    op.drop_table("validator_score_history")
