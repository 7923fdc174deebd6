"""Rastro's dbt integration project (dbt/integration_tests/), run as its README says: Rastro's
project installed as a package, hand-made landing rows, builds, and the marts compared with
expected CSVs to the cent.

Two stories, each told in its part's README: ledger/ lands in two batches, each followed by a
build at its own ledger clock; attribution/ lands once, before the first build (it pays no
commission, so the ledger's clocks do not concern it). After the second build every
comparison test of the project must return no row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.dbt import PROJECT_DIR, run_dbt
from rastro.schema.migrate import migrate

INTEGRATION_DIR = PROJECT_DIR / "integration_tests"
TIMEOUT = 600  # seconds per dbt command; the whole test takes about a minute
# The ledger story's batches and the clock of the build that follows each
# (dbt/integration_tests/ledger/README.md).
LEDGER_BATCHES = ((1, "2024-04-30T23:59:59Z"), (2, "2024-06-30T23:59:59Z"))
# Builds leave out the integration project's own nodes: its seeds are loaded once by
# `dbt seed`, its comparison tests run after the last build. Unit tests run in test_ledger.
BUILD_ARGS = [
    "--exclude",
    "package:rastro_integration_tests",
    "--exclude-resource-type",
    "unit_test",
]
COMPARISONS = {
    "assert_ledger_integration_commissions_match_expected",
    "assert_ledger_integration_entries_match_expected",
    "assert_attribution_integration_attributions_match_expected",
    "assert_attribution_integration_journeys_match_expected",
}
SHOWN_ROWS = 40  # differences printed per failing comparison


def dbt(warehouse_url: str, database: str, work_dir: Path, *args: str) -> dict[str, Any]:
    """`dbt <args>` on the integration project; returns run_results.json. The caller checks
    the statuses (a failing comparison makes dbt exit 1)."""
    result = run_dbt(
        args,
        warehouse_url,
        database,
        work_dir=work_dir,
        project_dir=INTEGRATION_DIR,
        capture=True,
        timeout=TIMEOUT,
    )
    print(result.stdout + result.stderr)
    results_file = work_dir / "target" / "run_results.json"
    assert result.returncode in (0, 1) and results_file.exists(), f"dbt {args[0]} failed"
    run_results: dict[str, Any] = json.loads(results_file.read_text())
    results_file.unlink()  # the next command must not read this one's results
    return run_results


def succeeded(warehouse_url: str, database: str, work_dir: Path, *args: str) -> None:
    run_results = dbt(warehouse_url, database, work_dir, *args)
    failed = {
        node["unique_id"]: node["status"]
        for node in run_results["results"]
        if node["status"] not in ("success", "pass")
    }
    assert not failed, f"dbt {args[0]}: {failed}; every statement is in {work_dir}/logs"


def deps(warehouse_url: str, database: str, work_dir: Path) -> None:
    """`dbt deps` links Rastro's project (packages.yml: `local: ../`), no network."""
    result = run_dbt(
        ["deps"],
        warehouse_url,
        database,
        work_dir=work_dir,
        project_dir=INTEGRATION_DIR,
        capture=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (INTEGRATION_DIR / "dbt_packages" / "rastro" / "dbt_project.yml").exists()


@pytest.mark.slow
def test_integration_project_matches_expected_csvs(
    warehouse_url: str, database: str, client: Any, tmp_path: Path
) -> None:
    migrate(client, database)
    deps(warehouse_url, database, tmp_path)
    succeeded(warehouse_url, database, tmp_path, "seed")
    succeeded(warehouse_url, database, tmp_path, "run-operation", "attribution_load_landing")
    for batch, as_of in LEDGER_BATCHES:
        succeeded(
            warehouse_url,
            database,
            tmp_path,
            "run-operation",
            "ledger_load_landing",
            "--args",
            json.dumps({"batch": batch}),
        )
        succeeded(
            warehouse_url,
            database,
            tmp_path,
            "build",
            *BUILD_ARGS,
            "--vars",
            json.dumps({"ledger__as_of": as_of}),
        )

    run_results = dbt(
        warehouse_url, database, tmp_path, "test", "--select", "package:rastro_integration_tests"
    )
    comparisons = {node["unique_id"].split(".")[-1]: node for node in run_results["results"]}
    assert comparisons.keys() >= COMPARISONS, sorted(comparisons)
    differences = []
    for name, node in sorted(comparisons.items()):
        if node["status"] != "pass":
            # A comparison returns its differences: show them (side = missing | unexpected).
            query = client.query(f"SELECT * FROM ({node['compiled_code']}\n) LIMIT {SHOWN_ROWS}")
            table = [query.column_names, *query.result_rows]
            differences.append("\n".join([name, *("\t".join(map(str, row)) for row in table)]))
    assert not differences, "\n\n".join(differences)
