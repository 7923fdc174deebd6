"""What the attribution and ledger models (dbt/) read besides the events: the time-decay
half-life of a campaign's terms, manual commission decisions and payout items."""

from rastro.schema import tables
from rastro.schema.operations import AddColumns, CreateTable, Operation

OPERATIONS: list[Operation] = [
    AddColumns(tables.CAMPAIGNS, ("attribution_half_life_days",)),
    CreateTable(tables.COMMISSION_DECISIONS),
    CreateTable(tables.PAYOUT_ITEMS),
]
