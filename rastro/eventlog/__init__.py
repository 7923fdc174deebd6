"""The embedded event log: where the API puts every click and order before it answers, and
where the ingest job reads them from.

Under `$RASTRO_DATA_DIR/eventlog`, each writer process (every API worker) owns a partition
`p-NNNN` and appends records to its segment files; readers, in any process, read each partition
from an `Offset` and commit the offsets they are done with in an `OffsetStore`. Payloads are
opaque bytes (one JSON object per record, from the API). The format, the guarantees and the
torn-record and corruption policy: docs/event-log.md.

    with LogWriter(root) as log:          # after fork: one writer per process
        offset = log.append(payload)      # survives kill -9 once returned; on disk within 0.2 s
        log.append_durable(payload)       # returns once fsynced (group commit)

    reader = LogReader(root)
    for partition in reader.partitions():
        records = reader.read(partition, Offset.start())
"""

from rastro.eventlog.format import (
    MAX_PAYLOAD_BYTES,
    CorruptRecord,
    EventLogError,
    Offset,
    OffsetOutOfRange,
    Record,
    partition_number,
)
from rastro.eventlog.offsets import OffsetStore
from rastro.eventlog.protocol import EventLog
from rastro.eventlog.reader import LogReader
from rastro.eventlog.writer import LogWriter

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "CorruptRecord",
    "EventLog",
    "EventLogError",
    "LogReader",
    "LogWriter",
    "Offset",
    "OffsetOutOfRange",
    "OffsetStore",
    "Record",
    "partition_number",
]
