"""Query-time deduplicated views of the landing tables, for the ingest job's at-least-once
delivery (docs/ingest.md): `<table>_dedup` hides the replayed copies of an event that
ReplacingMergeTree has not merged away yet (FINAL), and `dead_letters_dedup` the replayed
copies of a dead letter from the event log (one per log partition and offset)."""

from rastro.schema.operations import Operation, RawSQL

_LANDING = ("clicks", "page_events", "conversions", "order_updates", "identity_links")

OPERATIONS: list[Operation] = [
    *(
        RawSQL(
            f"CREATE VIEW IF NOT EXISTS {{database}}.{table}_dedup AS\n"
            f"SELECT * FROM {{database}}.{table} FINAL"
        )
        for table in _LANDING
    ),
    RawSQL(
        "CREATE VIEW IF NOT EXISTS {database}.dead_letters_dedup AS\n"
        "SELECT * FROM {database}.dead_letters WHERE source != 'eventlog'\n"
        "UNION ALL\n"
        "SELECT * FROM {database}.dead_letters WHERE source = 'eventlog'\n"
        "LIMIT 1 BY log_partition, log_offset"
    ),
]
