"""Checking a value against a JSON schema sent by an app (a tool's ``parameters``, a response format's schema).

jsonschema does the checking, under the draft the schema names (else 2020-12); this module only words the
outcome the same way for the miner engine (which keeps a freely written tool call only when its arguments
are valid) and the validator.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

__all__ = ["schema_errors"]


def schema_errors(value: Any, schema: dict[str, Any] | None) -> str | None:
    """Why ``value`` breaks ``schema`` (where, and the best-matching error), or None when it does not or when
    the schema is itself not a valid JSON schema (nothing to hold a value to)."""
    if not schema:
        return None
    try:
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator.check_schema(schema)
    except SchemaError:
        return None  # the app's schema is broken: nothing to hold the miner to beyond parsing
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"at {where}: {error.message[:200]}"
