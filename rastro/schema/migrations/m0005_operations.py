"""What the batch jobs Dagster runs write (issue 6): fraud flags, reconciliation differences
against merchants' own reports, and prepared payout batches."""

from rastro.schema import tables
from rastro.schema.operations import CreateTable, Operation

OPERATIONS: list[Operation] = [
    CreateTable(tables.FRAUD_FLAGS),
    CreateTable(tables.RECONCILIATION_DIFFERENCES),
    CreateTable(tables.MERCHANT_REPORTS),
    CreateTable(tables.PAYOUT_BATCHES),
]
