"""Stores: Redis (shared hot state: quotas, replay cache, scores, streams) and SQL (history, ledgers)."""
