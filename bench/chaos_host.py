"""`python -m bench.chaos_host --lease-seconds N -- <devhost arguments>`: the development host with a shorter
sync lease, for chaos runs and fault tests only.

Time compression, nothing else: a worker killed mid-run keeps its user's lease until it expires (900 s in
production, `SyncOptions.lease_seconds`), and no other worker may sync that user meanwhile. A chaos run that
kills workers every minute cannot wait a quarter of an hour for each; with N seconds the same recovery path
(lease expires → the next run takes it over) is exercised within the run. The lease is still renewed before
every chunk exactly as in production. Everything else is `python -m devhost` unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    parser = argparse.ArgumentParser(prog="python -m bench.chaos_host")
    parser.add_argument("--lease-seconds", type=float, required=True)
    ours = parser.parse_args(args[:split])
    from sync_core.app import jobs
    from sync_core.sync import user as service

    def sync_user(*args: Any, options: service.SyncOptions = service.SyncOptions(), **kwargs: Any) -> Any:
        # The job's own options (chunk size under the run budget) stand; only the lease is shortened.
        return service.sync_user(*args, options=dataclasses.replace(options, lease_seconds=ours.lease_seconds),
                                 **kwargs)

    jobs.sync_user = sync_user  # type: ignore[assignment]
    from devhost.__main__ import main as devhost_main

    return devhost_main(args[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
