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
