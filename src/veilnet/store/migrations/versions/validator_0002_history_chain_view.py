"""validator: each score history row keeps the miner's uid, incentive and emission at that epoch

Revision ID: validator_0002
Revises: validator_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "validator_0002"
down_revision = "validator_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("validator_score_history") as batch:
        batch.add_column(sa.Column("uid", sa.Integer, nullable=True))
        batch.add_column(sa.Column("incentive", sa.Float, nullable=True))
        batch.add_column(sa.Column("emission", sa.Float, nullable=True))
    op.create_index("ix_validator_score_history_tempo", "validator_score_history", ["validator", "netuid", "tempo"])


def downgrade() -> None:
    op.drop_index("ix_validator_score_history_tempo", "validator_score_history")
    with op.batch_alter_table("validator_score_history") as batch:
        batch.drop_column("emission")
        batch.drop_column("incentive")
        batch.drop_column("uid")
