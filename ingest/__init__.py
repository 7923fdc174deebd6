"""Stream ingest: the Bytewax dataflow that loads the event log into the landing tables of
rastro/schema (docs/ingest.md). `build_flow` assembles it, `run_ingest` runs it for real."""
