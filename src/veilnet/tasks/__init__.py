"""Task types: request schemas, synthetic generators and verifiers (plain functions)."""
