"""Rastro's core package: what every process shares (settings, ids, the warehouse client,
the embedded ClickHouse endpoint and the schema)."""
