"""python -m devhost: serve a Functions app (Python v2 model) locally, where Core Tools cannot run.

    python -m devhost [--app function_app:app] [--host 127.0.0.1] [--port 7071]
                      [--settings local.settings.json] [--host-json host.json] [--ready-file PATH]
                      [--max-poll-interval 1.0] [--shutdown-timeout 30] [--function-timeout SECONDS]

Settings: `Values` of the settings file become environment variables before the app is imported (variables
already set win). HTTP keys come from DEVHOST_FUNCTION_KEY (function level) and DEVHOST_MASTER_KEY (function and
admin level). host.json's functionTimeout (default 5 min) bounds every invocation; --function-timeout or
DEVHOST_FUNCTION_TIMEOUT (seconds, a TimeSpan, or -1 for none) overrides it for this host.
Exit codes: 0 after a graceful shutdown, 2 for a configuration error (one line on stderr).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

# Only light imports up here: main() installs its signal handlers before uvicorn, the Azure SDKs and the app are
# imported (a second or more), so a Ctrl-C at any moment ends in a clean exit, never a KeyboardInterrupt.

DEFAULT_SETTINGS = Path("local.settings.json")
DEFAULT_PORT = 7071


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=None,
                        help="HTTP port (default: Host.LocalHttpPort of the settings file, else 7071; 0 = any free)")
    parser.add_argument("--settings", type=Path, default=None,
                        help="a local.settings.json-format file (default: ./local.settings.json when present)")
    parser.add_argument("--host-json", type=Path, default=Path("host.json"), help="host.json to honour")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help='write {"url": ..., "pid": ...} here once serving')
    parser.add_argument("--max-poll-interval", type=float,
                        default=float(os.environ.get("DEVHOST_MAX_POLL_INTERVAL", "1.0")),
                        help="longest wait between polls of an idle queue, in seconds (env DEVHOST_MAX_POLL_INTERVAL)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0,
                        help="seconds to let in-flight invocations finish on shutdown")
    parser.add_argument("--function-timeout", default=None,
                        help="override host.json's functionTimeout: seconds, a TimeSpan or -1 for none "
                             "(env DEVHOST_FUNCTION_TIMEOUT, which the settings file may also set)")
    return parser.parse_args(argv)


def _fail(message: str) -> int:
    print(f"devhost: {message}", file=sys.stderr)
    return 2


def _is_settings_error(exc: BaseException) -> bool:
    """The app's own one-line configuration error (sync_core.domain.errors.SettingsError), if the app has one."""
    try:
        from sync_core.domain.errors import SettingsError
    except ImportError:
        return False
    return isinstance(exc, SettingsError)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)

    from devhost.host import AppLoadError, DevHost, ServeOptions, load_app
    from devhost.hostjson import FUNCTION_TIMEOUT_SETTING, HostJsonError, load_host_json, override_function_timeout
    from devhost.settings_file import SettingsFileError, apply_to_environ, load_local_settings

    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", stream=sys.stderr)
    # HTTP client libraries log every request (URLs with their query strings) at INFO; the app's own logs are
    # what a developer wants to see, and URLs may carry codes or keys that must not reach a log.
    for noisy in ("azure", "httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    settings_path = args.settings if args.settings is not None else DEFAULT_SETTINGS
    port = args.port
    if args.settings is not None or settings_path.is_file():
        try:
            local = load_local_settings(settings_path)
        except SettingsFileError as exc:
            return _fail(str(exc))
        apply_to_environ(local.values)
        if port is None:
            port = local.local_http_port
    try:
        config = load_host_json(args.host_json)
        # Read after the settings file reached the environment, so the file can set it too.
        timeout_override = args.function_timeout or os.environ.get(FUNCTION_TIMEOUT_SETTING)
        if timeout_override:
            config = override_function_timeout(config, timeout_override)
    except HostJsonError as exc:
        return _fail(str(exc))
    try:
        app = load_app(args.app)
    except AppLoadError as exc:
        return _fail(str(exc))
    except Exception as exc:
        if _is_settings_error(exc):
            print(str(exc), file=sys.stderr)
            return 2
        raise
    options = ServeOptions(host=args.host, port=DEFAULT_PORT if port is None else port, ready_file=args.ready_file,
                           max_poll_interval=args.max_poll_interval, shutdown_timeout=args.shutdown_timeout)
    DevHost(app, config, options, stop).serve()
    # Shutdown is done; a late second Ctrl-C must not turn a clean exit into death by signal during finalization.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
