"""python -m m365_emulator --host 127.0.0.1 --port 0 --ready-file PATH [--state-file PATH]
    [--throttle-limit N --throttle-window SECONDS --max-concurrency N] [--delta-retention-seconds S]"""
from __future__ import annotations

import argparse
from pathlib import Path

from m365_emulator.serve import Options, run


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m m365_emulator",
                                     description="A stateful local Microsoft Graph and identity platform.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="Graph and control port (0: any free port)")
    parser.add_argument("--ready-file", type=Path, help="where to write the endpoints as JSON once serving")
    parser.add_argument("--state-file", type=Path, help="persist users and mailboxes here across restarts")
    parser.add_argument("--throttle-limit", type=int, help="requests per window per app and mailbox (10000)")
    parser.add_argument("--throttle-window", type=float, help="throttling window in seconds (600)")
    parser.add_argument("--max-concurrency", type=int, help="concurrent requests per app and mailbox (4)")
    parser.add_argument("--delta-retention-seconds", type=float, help="delta token lifetime (7 days)")
    parser.add_argument("--tls-dir", type=Path, help="where the identity platform's certificates live")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    ns = parser.parse_args(argv)
    return Options(host=ns.host, port=ns.port, ready_file=ns.ready_file, state_file=ns.state_file,
                   throttle_limit=ns.throttle_limit, throttle_window=ns.throttle_window,
                   max_concurrency=ns.max_concurrency, delta_retention_seconds=ns.delta_retention_seconds,
                   tls_dir=ns.tls_dir, log_level=ns.log_level)


if __name__ == "__main__":
    run(parse_args())
