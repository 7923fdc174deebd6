"""The warehouse: ClickHouse, either embedded (chDB behind our HTTP endpoint) or a server."""
