"""The landing tables: events as ingest writes them from the event log."""

from rastro.schema import tables
from rastro.schema.operations import CreateTable, Operation

OPERATIONS: list[Operation] = [
    CreateTable(tables.CLICKS),
    CreateTable(tables.PAGE_EVENTS),
    CreateTable(tables.CONVERSIONS),
    CreateTable(tables.ORDER_UPDATES),
    CreateTable(tables.IDENTITY_LINKS),
    CreateTable(tables.DEAD_LETTERS),
]
