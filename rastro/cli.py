"""The `rastro` command: one entry point for every process and task."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rastro import logs
from rastro.settings import Settings, get_settings


def _warehouse_serve(args: argparse.Namespace, settings: Settings) -> int:
    from rastro.warehouse.server import serve

    if not settings.embedded:
        print(
            "RASTRO_CLICKHOUSE_URL is set (server mode): nothing embedded to serve.",
            file=sys.stderr,
        )
        return 2
    data_dir = args.data_dir or settings.warehouse_data_dir
    try:
        serve(
            data_dir,
            settings.warehouse_credentials,
            args.host or settings.warehouse_host,
            args.port or settings.warehouse_port,
        )
    except (RuntimeError, OSError) as exc:  # the directory is owned, the port is taken, ...
        logging.getLogger("rastro.warehouse").error("cannot start the warehouse: %s", exc)
        return 1
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from rastro.schema.migrate import migrate
    from rastro.warehouse.client import connect

    applied = migrate(connect(settings), settings.clickhouse_database)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


def _tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    from api.store import ConfigStore

    store = ConfigStore(settings)
    tenant, key = store.create_tenant(args.name, args.currency, args.timezone)
    if args.domain:
        store.for_tenant(tenant.tenant_id).create_merchant(args.name, args.domain)
    print(f"tenant id:     {tenant.tenant_id}")
    print(f"admin API key: {key}")
    print("The key is shown once and stored only as a hash: keep it now.")
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host or settings.api_host,
        port=args.port or settings.api_port,
        workers=args.workers or settings.api_workers,
        access_log=False,  # one line per redirect would cost more than the redirect
        log_config=None,  # keep Rastro's JSON logging
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For is believed only from RASTRO_TRUSTED_PROXIES
    )
    return 0


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.run import run_ingest

    run_ingest(settings)
    return 0


def _webhooks(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from pipelines.webhooks import run

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(settings, stop)
    return 0


def _dbt(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.dbt import run_dbt

    dbt_args = args.dbt_args[1:] if args.dbt_args[:1] == ["--"] else args.dbt_args
    return run_dbt(dbt_args, settings.warehouse_url, settings.clickhouse_database).returncode


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from pipelines.simulate import Mix, Options, format_score, ingest_and_build, score, simulate
    from pipelines.simulate.run import DEFAULT_END
    from rastro.warehouse.client import connect

    problem = ""
    if args.conversions < 1:
        problem = "--conversions must be at least 1"
    elif not 0 <= args.cookie_lost_share <= 1:
        problem = "--cookie-lost-share must be between 0 and 1"
    elif args.to == "http" and not args.api_url:
        problem = "--to http needs --api-url"
    if problem:
        print(f"rastro simulate: {problem}", file=sys.stderr)
        return 2
    end = datetime.fromisoformat(args.end) if args.end else DEFAULT_END
    options = Options(
        seed=args.seed,
        conversions=args.conversions,
        mix=Mix(cookie_lost_share=args.cookie_lost_share),
        end=end if end.tzinfo else end.replace(tzinfo=UTC),
        days=args.days,
        out=args.out,
        to=args.to,
        api_url=args.api_url or "",
    )
    summary = simulate(settings, options)
    print("\n".join(summary.lines()))
    if not args.score:
        return 0
    build = ingest_and_build(settings)
    print(f"dbt build: {build.summary}")
    if build.returncode != 0:
        print(build.output, file=sys.stderr)
        print(f"dbt build exited {build.returncode}: scoring what it built", file=sys.stderr)
    client = connect(settings, database=settings.clickhouse_database)
    try:
        result = score(client, settings.clickhouse_database, summary.out)
    finally:
        client.close()
    print(format_score(result))
    return 0 if build.returncode == 0 else 1


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from rastro.supervisor import up

    return up(settings, data_dir=args.data_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rastro", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    warehouse = commands.add_parser("warehouse", help="the embedded ClickHouse endpoint")
    warehouse_commands = warehouse.add_subparsers(dest="warehouse_command", required=True)
    serve = warehouse_commands.add_parser(
        "serve", help="own the chDB data directory and serve ClickHouse's HTTP interface"
    )
    serve.add_argument("--host", help="address to bind (default RASTRO_WAREHOUSE_HOST)")
    serve.add_argument("--port", type=int, help="port (default RASTRO_WAREHOUSE_PORT, 8123)")
    serve.add_argument(
        "--data-dir", type=Path, help="chDB data directory (default $RASTRO_DATA_DIR/warehouse)"
    )
    serve.set_defaults(run=_warehouse_serve)

    migrate = commands.add_parser("migrate", help="apply the schema migrations (idempotent)")
    migrate.set_defaults(run=_migrate)

    tenant = commands.add_parser("tenant", help="tenants (merchant accounts)")
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True)
    create = tenant_commands.add_parser(
        "create", help="create a tenant; prints its id and first admin API key"
    )
    create.add_argument("name")
    create.add_argument("--currency", default="BRL", help="ISO 4217 (default BRL)")
    create.add_argument("--timezone", default="America/Sao_Paulo", help="IANA time zone")
    create.add_argument(
        "--domain",
        action="append",
        default=[],
        help="a host name of the store (repeatable): the default link destination allowlist",
    )
    create.set_defaults(run=_tenant_create)

    api = commands.add_parser("api", help="the API (tracking edge) under uvicorn")
    api.add_argument("--host", help="address to bind (default RASTRO_API_HOST)")
    api.add_argument("--port", type=int, help="port (default RASTRO_API_PORT, 8000)")
    api.add_argument("--workers", type=int, help="worker processes (default RASTRO_API_WORKERS)")
    api.set_defaults(run=_api)

    ingest = commands.add_parser(
        "ingest", help="stream the event log into the warehouse (Bytewax), until Ctrl-C"
    )
    ingest.set_defaults(run=_ingest)

    webhooks = commands.add_parser(
        "webhooks",
        help="outgoing webhooks: turn new conversions, commission changes and payouts into "
        "events and deliver them to the tenants' endpoints, until Ctrl-C (docs/webhooks.md)",
    )
    webhooks.set_defaults(run=_webhooks)

    dbt = commands.add_parser(
        "dbt",
        help="dbt on Rastro's project (dbt/) against the configured warehouse: "
        "rastro dbt build, rastro dbt -- test --select fct_attributions",
    )
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="dbt's own arguments")
    dbt.set_defaults(run=_dbt)

    simulate = commands.add_parser(
        "simulate",
        help="generate labelled traffic (ground truth) into the event log or through the API; "
        "--score: ingest it, build dbt and score the attribution against the truth",
    )
    simulate.add_argument("--seed", type=int, default=1, help="same seed, same events (1)")
    simulate.add_argument(
        "--conversions", type=int, default=1000, help="converting journeys (default 1000)"
    )
    simulate.add_argument(
        "--cookie-lost-share",
        type=float,
        default=0.35,
        help="share of converting click journeys whose order comes without the cookie (0.35)",
    )
    simulate.add_argument(
        "--days", type=int, default=90, help="conversions happen over this many days (90)"
    )
    simulate.add_argument(
        "--end", help="ISO date the period ends at (default 2026-11-01; UTC if no offset)"
    )
    simulate.add_argument(
        "--out", type=Path, help="where the truth goes (default $RASTRO_DATA_DIR/simulate)"
    )
    simulate.add_argument(
        "--to", choices=("log", "http"), default="log", help="the event log, or the API (http)"
    )
    simulate.add_argument("--api-url", help="--to http: the API's base URL")
    simulate.add_argument(
        "--score", action="store_true", help="then ingest, dbt build and score the attribution"
    )
    simulate.set_defaults(run=_simulate)

    up = commands.add_parser(
        "up", help="run the platform: warehouse, migrations and every service, until Ctrl-C"
    )
    up.add_argument("--data-dir", type=Path, help="local state (default RASTRO_DATA_DIR)")
    up.set_defaults(run=_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    logs.configure(settings.log_level)
    return int(args.run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
