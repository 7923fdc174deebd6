"""The configuration tables: tenants, their stores, affiliates, campaign terms, links and
coupon codes, API keys."""

from rastro.schema import tables
from rastro.schema.operations import CreateTable, Operation

OPERATIONS: list[Operation] = [
    CreateTable(tables.TENANTS),
    CreateTable(tables.MERCHANTS),
    CreateTable(tables.AFFILIATES),
    CreateTable(tables.CAMPAIGNS),
    CreateTable(tables.LINKS),
    CreateTable(tables.API_KEYS),
]
