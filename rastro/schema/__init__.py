"""Rastro's warehouse schema as code: every table defined once (`tables`), applied by numbered
migrations (`migrations`, `migrate`), with a committed snapshot of the rendered DDL
(`snapshot`). See docs/data-model.md."""
