"""Offsets, payload limits and the offsets file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rastro.eventlog import (
    MAX_PAYLOAD_BYTES,
    EventLogError,
    LogWriter,
    Offset,
    OffsetStore,
    partition_number,
)


def test_offset_text_and_int_round_trip_and_keep_order() -> None:
    offsets = [Offset(0, 0), Offset(0, 16), Offset(0, 2**32 - 1), Offset(1, 16), Offset(7, 5)]
    assert sorted(reversed(offsets)) == offsets
    for offset in offsets:
        assert Offset.from_str(offset.to_str()) == offset
        assert Offset.from_int(offset.to_int()) == offset
    assert [o.to_int() for o in offsets] == sorted(o.to_int() for o in offsets)
    assert Offset.start() == Offset(0, 0)
    assert Offset(3, 1234).to_str() == "3:1234"
    for bad in ("", "3", "3:", "a:1", "-1:2", "1:2:3", " 1:2"):
        with pytest.raises(ValueError):
            Offset.from_str(bad)
    with pytest.raises(ValueError):
        Offset(0, 2**32).to_int()
    assert partition_number("p-0007") == 7
    assert partition_number("p-12345") == 12345


def test_payloads_are_checked(tmp_path: Path) -> None:
    with LogWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="empty"):
            writer.append(b"")
        with pytest.raises(ValueError):
            writer.append(b"x" * (MAX_PAYLOAD_BYTES + 1))
        with pytest.raises(TypeError):
            writer.append("text")  # type: ignore[arg-type]
        with pytest.raises(ValueError):  # one bad payload refuses the whole batch
            writer.append_many([b"good", b""])
        assert writer.partition is None  # refused before anything was claimed
        big = writer.append(b"y" * MAX_PAYLOAD_BYTES)
        assert big.position == 16


def test_offset_store_commits_atomically_and_merges(tmp_path: Path) -> None:
    store = OffsetStore.for_consumer(tmp_path, "ingest")
    assert store.path == tmp_path / "offsets" / "ingest.json"
    assert store.load() == {}
    store.commit({"p-0000": Offset(1, 100), "p-0001": Offset(0, 16)})
    store.commit({"p-0001": Offset(2, 40)})
    again = OffsetStore(tmp_path / "offsets" / "ingest.json")
    assert again.load() == {"p-0000": Offset(1, 100), "p-0001": Offset(2, 40)}
    document = json.loads(store.path.read_text())
    assert document["offsets"] == {"p-0000": "1:100", "p-0001": "2:40"}
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        "ingest.json",
        "ingest.json.lock",
    ]
    with pytest.raises(ValueError):
        store.commit({"../x": Offset(0, 0)})
    with pytest.raises(ValueError):
        OffsetStore.for_consumer(tmp_path, "../evil")


def test_a_failed_commit_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = OffsetStore.for_consumer(tmp_path, "ingest")
    store.commit({"p-0000": Offset(1, 100)})

    def crash(src: object, dst: object) -> None:
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.commit({"p-0000": Offset(9, 9)})
    monkeypatch.undo()
    assert store.load() == {"p-0000": Offset(1, 100)}


def test_an_unreadable_offsets_file_is_an_error(tmp_path: Path) -> None:
    store = OffsetStore.for_consumer(tmp_path, "ingest")
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"offsets": {"p-0000": "1:2"}}')
    with pytest.raises(EventLogError, match="unreadable"):
        store.load()
