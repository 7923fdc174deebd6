"""The writer side of the event log, as the API sees it, whatever the log is."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from rastro.eventlog.format import Offset


class EventLog(Protocol):
    """Where the API puts every event before it answers.

    Delivery guarantee: **at least once into the log**. A call that returns has put the record
    in the log; a call that raises may or may not have (the client retries, and the event is
    written again). Consumers therefore deduplicate by the event's `event_id`, which the
    payload carries: the log itself knows nothing about payloads (opaque bytes, one JSON object
    per record from the API).

    Durability, per call:

    - `append`: once it returns, the record survives the death of the calling process
      (kill -9 included); it reaches the disk within the implementation's sync interval, so a
      power loss can lose at most that last interval.
    - `append_durable`: once it returns, the record is on disk (fsynced); concurrent callers
      share fsyncs (group commit).
    - `append_many`: the same for a batch, in order, written at once; `durable=True` waits
      for the fsync as `append_durable` does.

    Implementations: `rastro.eventlog.LogWriter` (embedded mode: segment files on the local
    disk, one partition per writer process); a Kafka producer in server mode (a later issue),
    which returns the record's Kafka offset as `Offset(0, kafka_offset)` and makes every call
    wait for the brokers' acknowledgement (`acks=all`): a record still in the producer's buffer
    would not survive the process.

    An instance belongs to one process: create it after fork (every uvicorn worker its own).
    """

    def append(self, payload: bytes) -> Offset: ...

    def append_durable(self, payload: bytes) -> Offset: ...

    def append_many(self, payloads: Iterable[bytes], *, durable: bool = False) -> list[Offset]: ...

    def close(self) -> None: ...
