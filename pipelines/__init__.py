"""Batch Python: the dbt runner, the ground-truth traffic simulator and fraud detection."""
