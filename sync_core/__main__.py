"""Operator commands: `python -m sync_core <command>`.

    sync --user U [--tenant T]          run one user's sync now, here, and print its run record
    status [--user U] [--json]          every user's connection state, last success, last error,
                                        quarantined records, subscription expiry; the poison queue
    launch-link --tenant T --user U     a fresh signed launch link into the settings page (valid for
                                        the longest lifetime the app accepts, or --lifetime seconds)
    migrate-state                       move the previous version's per-user state (keyed by user id
                                        alone) to the per-tenant tables; idempotent, resumable

Settings come from the environment (the app settings); when AzureWebJobsStorage is not set and
./local.settings.json exists (what `make run` writes), its Values are used. Exit codes: 0 done,
1 nothing to do / not found, 2 a configuration error (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sync_core.domain.errors import SettingsError, StorageError
from sync_core.web.auth import LAUNCH_MAX_LIFETIME

LOCAL_SETTINGS = Path("local.settings.json")


def _lifetime(text: str) -> int:
    """A launch link's lifetime: the app refuses a link that lives longer than LAUNCH_MAX_LIFETIME,
    so printing one would hand the operator a link that can never open the page."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not 1 <= seconds <= LAUNCH_MAX_LIFETIME:
        raise argparse.ArgumentTypeError(
            f"{seconds} s is not accepted: the app refuses launch links that live longer than "
            f"{LAUNCH_MAX_LIFETIME} s (give 1 to {LAUNCH_MAX_LIFETIME})")
    return seconds


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sync_core", description="Operator commands of crm365sync.")
    parser.add_argument("--settings", type=Path, default=None,
                        help="a local.settings.json whose Values fill in missing app settings")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="run one user's sync now and print the run record")
    sync.add_argument("--user", required=True)
    sync.add_argument("--tenant", default=None, help="needed only when the user id exists in several tenants")
    status = commands.add_parser("status", help="sync health of every user, and the poison queue")
    status.add_argument("--user", default=None, help="one user in detail: latest run record, quarantine")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    link = commands.add_parser("launch-link", help="print a fresh launch link into the settings page")
    link.add_argument("--tenant", required=True)
    link.add_argument("--user", required=True)
    link.add_argument("--lifetime", type=_lifetime, default=LAUNCH_MAX_LIFETIME,
                      help=f"seconds the link stays valid (at most {LAUNCH_MAX_LIFETIME}, the default)")
    commands.add_parser("migrate-state", help="move sync state kept by user id alone to (tenant, user) keys, once")
    return parser.parse_args(argv)


def _load_settings_file(path: Path | None) -> None:
    candidate = path if path is not None else (LOCAL_SETTINGS if "AzureWebJobsStorage" not in os.environ else None)
    if candidate is None or not candidate.is_file():
        if path is not None:
            raise SettingsError(f"Settings file {path} does not exist.")
        return
    try:
        from devhost.settings_file import SettingsFileError, apply_to_environ, load_local_settings
    except ImportError:  # a deployed package ships without devhost: Azure gives settings as app settings
        raise SettingsError(f"{candidate} can only be read where devhost/ is installed; "
                            "set the app settings as environment variables instead.") from None

    try:
        apply_to_environ(load_local_settings(candidate).values)
    except SettingsFileError as exc:
        raise SettingsError(str(exc)) from None


def _sync(args: argparse.Namespace) -> int:
    from sync_core.app import jobs
    from sync_core.bootstrap import build_services
    from sync_core.logs import configure_logging

    configure_logging()  # the run's own log lines go to stderr, the run record to stdout
    services = build_services()
    tenants = [args.tenant] if args.tenant else services.connections.tenants_of(args.user)
    if not tenants:
        print(f"no connection for user {args.user}", file=sys.stderr)
        return 1
    if len(tenants) > 1:
        print(f"user {args.user} exists in several tenants ({', '.join(tenants)}): pass --tenant", file=sys.stderr)
        return 1
    run = jobs.run_user_sync(services, tenants[0], args.user)
    if run is None:
        connection = services.connections.get(tenants[0], args.user)
        state = connection.status.value if connection else "no connection"
        reason = connection.last_error if connection and connection.last_error else "not connected or free plan"
        print(f"no sync ran for {tenants[0]}/{args.user}: {state} ({reason})", file=sys.stderr)
        return 1
    print(json.dumps(run.model_dump(mode="json", exclude={"etag"}), indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    from sync_core.app import ops
    from sync_core.bootstrap import build_services

    services = build_services()
    statuses = ops.user_statuses(services, args.user)
    poison = ops.poison_report(services)
    if args.json:
        print(json.dumps(ops.status_json(statuses, poison), indent=2))
    elif args.user:
        if not statuses:
            print(f"no connection for user {args.user}", file=sys.stderr)
            return 1
        for status in statuses:
            print(ops.render_user(status))
    else:
        print(ops.render_table(statuses, poison))
    return 0 if statuses or not args.user else 1


def _launch_link(args: argparse.Namespace) -> int:
    from sync_core.settings import get_settings
    from sync_core.web.auth import launch_url

    settings = get_settings()
    print(launch_url(settings.public_base_url, settings.crm_launch_secret, args.tenant, args.user, args.lifetime))
    return 0


def _migrate_state(args: argparse.Namespace) -> int:
    from sync_core.bootstrap import build_services
    from sync_core.adapters.tables.state_migration import StateMigration

    services = build_services()
    report = StateMigration(services.table_service, services.settings.storage_name, services.connections,
                            services.counter).run()
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        _load_settings_file(args.settings)
        command = {"sync": _sync, "status": _status, "launch-link": _launch_link,
                   "migrate-state": _migrate_state}[args.command]
        return command(args)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"storage is not reachable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
