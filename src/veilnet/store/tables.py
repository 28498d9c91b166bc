"""Imports every store's table module so Alembic's autogenerate sees the whole schema.

Each store adds one import line here for its tables module (e.g. ``veilnet.store.gateway_tables``).
"""

from veilnet.store import (
    gateway_tables,  # noqa: F401
    validator_tables,  # noqa: F401
)
