"""Dagster: the definitions ops run Rastro with (orchestration/definitions.py).

Modules here do not use `from __future__ import annotations`: Dagster reads the annotations
of asset, check and sensor functions when they are defined (the context type, the resources)
and does not resolve annotations left as strings."""
