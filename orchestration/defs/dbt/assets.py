"""Rastro's dbt models as Dagster assets (dagster-dbt), their tests as asset checks.

Two multi-assets, so that Python checks can run between them: `attribution_models`
(everything up to fct_commissions) and `ledger_models` (the replay, the append-only ledger
and the balances). A blocking check on fct_attributions that fails in a run therefore stops
the ledger from advancing in that run, and dbt's own tests stop their downstream models
(`dbt build` skips what depends on a failed test)."""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from orchestration.defs.environment import dbt_state_dir, export_dbt_environment, settings
from pipelines.dbt import DBT, PROJECT_DIR, run_dbt

LEDGER_MODELS = ("int_commission_events__replayed", "fct_ledger_entries", "dim_affiliate_balances")
LEDGER_SELECTION = " ".join(LEDGER_MODELS)
# Landing tables get their own assets (defs/landing); the other sources are configuration
# written by the API.
LANDING_TABLES = ("clicks", "page_events", "conversions", "order_updates", "identity_links")
FRAUD_FLAGS = dg.AssetKey(["fraud_flags"])


def _sources_of(paths: list[Path]) -> float:
    return max(path.stat().st_mtime for path in paths)


def prepare_manifest() -> Path:
    """dbt's manifest.json for the project, parsed again when any project file is newer."""
    export_dbt_environment()
    target = dbt_state_dir() / "target"
    manifest = target / "manifest.json"
    files = [
        path
        for folder in ("models", "macros", "tests")
        for path in (PROJECT_DIR / folder).rglob("*")
        if path.is_file()
    ] + [PROJECT_DIR / "dbt_project.yml"]
    if not manifest.exists() or manifest.stat().st_mtime < _sources_of(files):
        current = settings()
        parsed = run_dbt(
            ["parse"],
            current.warehouse_url,
            current.clickhouse_database,
            work_dir=dbt_state_dir(),
            capture=True,
        )
        if parsed.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{parsed.stdout}{parsed.stderr}")
    return manifest


class RastroTranslator(DagsterDbtTranslator):
    """Asset keys and groups a newcomer can read in the UI: landing tables under `landing/`,
    configuration under `configuration/`, models by their own name, grouped by domain
    (staging, identity, conversions, attribution, commissions, ledger)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            name = dbt_resource_props["name"]
            prefix = "landing" if name in LANDING_TABLES else "configuration"
            return dg.AssetKey([prefix, name])
        return dg.AssetKey([dbt_resource_props["name"]])

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.key == dg.AssetKey([LEDGER_MODELS[0]]):
            # The ledger reads the holds fraud detection writes (commission_decisions): in a
            # run with both, fraud detection goes first. And it books what the attributions
            # credit: a failed blocking check on fct_attributions must stop it.
            spec = spec.merge_attributes(deps=[FRAUD_FLAGS, dg.AssetKey(["fct_attributions"])])
        return spec

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        if len(fqn) > 2 and fqn[1] in ("intermediate", "marts"):
            return str(fqn[2])
        if dbt_resource_props["name"] in LEDGER_MODELS:
            return "ledger"
        return "staging"


TRANSLATOR = RastroTranslator()
MANIFEST = prepare_manifest()


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    yield from dbt.cli(["build"], context=context, target_path=dbt_state_dir() / "target").stream()


@dbt_assets(
    manifest=MANIFEST,
    exclude=LEDGER_SELECTION,
    name="attribution_models",
    dagster_dbt_translator=TRANSLATOR,
)
def attribution_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """Identity, touchpoints, every attribution model, commissions (dbt build)."""
    yield from _build(context, dbt)


@dbt_assets(
    manifest=MANIFEST,
    select=LEDGER_SELECTION,
    name="ledger_models",
    dagster_dbt_translator=TRANSLATOR,
)
def ledger_models(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """The ledger: commission events replayed up to now, new entries appended, balances."""
    yield from _build(context, dbt)


CONFIGURATION = [
    dg.AssetSpec(
        dg.AssetKey(["configuration", name]),
        group_name="configuration",
        description=f"Rastro's `{name}` table, written by the API.",
    )
    for name in ("campaigns", "links", "affiliates", "commission_decisions", "payout_items")
]

defs = dg.Definitions(
    assets=[attribution_models, ledger_models, *CONFIGURATION],
    resources={
        "dbt": DbtCliResource(
            project_dir=str(PROJECT_DIR),
            profiles_dir=str(PROJECT_DIR),
            dbt_executable=str(DBT),
        )
    },
)
