"""What the merchant and affiliate API and console keep (issue 7): console users, the audit
log, payout minimums, outgoing webhooks and what-if scenarios."""

from rastro.schema import tables
from rastro.schema.operations import AddColumns, CreateTable, Operation

OPERATIONS: list[Operation] = [
    CreateTable(tables.USERS),
    CreateTable(tables.AUDIT_LOG),
    CreateTable(tables.PAYOUT_SETTINGS),
    CreateTable(tables.WEBHOOK_ENDPOINTS),
    CreateTable(tables.WEBHOOK_EVENTS),
    CreateTable(tables.WEBHOOK_DELIVERIES),
    CreateTable(tables.WHAT_IF_RUNS),
    # Per-commission amounts of a prepared batch: paying writes them to payout_items.
    AddColumns(tables.PAYOUT_BATCHES, ("commission_amounts",)),
]
