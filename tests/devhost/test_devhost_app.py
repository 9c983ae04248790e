"""The real function_app through devhost, start-up errors, and graceful shutdown."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from devhost_harness import ROOT, SAMPLE_HOST_JSON, clean_environ, start_devhost

from devhost.azurite import Azurite


def test_health_of_the_real_function_app(app_env: dict[str, str], tmp_path: Path) -> None:
    # Settings reach the app through local.settings.json, as they do under Core Tools.
    settings = {"IsEncrypted": False, "Values": app_env}
    host = start_devhost(tmp_path, clean_environ(), app="function_app:app", settings=settings,
                         host_json=None)
    try:
        response = host.get("/api/health")
        assert response.status_code == 200, host.log()
        report = response.json()
        assert report["storage"]["ok"] is True
        # app_env points Graph at a closed port: reported, but storage alone decides the status code.
        assert report["graph"]["ok"] is False
        assert report["status"] == "degraded"
        assert host.request("POST", "/api/health").status_code == 405
    finally:
        assert host.terminate() == 0


def test_a_settings_error_at_import_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--app", "tests.devhost.settings_error_app:app", "--port", "0"],
        cwd=ROOT, env=clean_environ(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Setting AzureWebJobsStorage is missing: expected a storage connection string")
    assert "Traceback" not in result.stderr


def test_a_malformed_settings_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text("{ not json")
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--settings", str(path), "--port", "0"],
        cwd=ROOT, env=clean_environ(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is not valid JSON" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_finishes_in_flight_work_and_exits_0(azurite: Azurite, tmp_path: Path, sig: int) -> None:
    env = clean_environ(
        # A schedule that will not come round during the test: any tick seen is the run_on_startup one.
        SAMPLE_TICK_SCHEDULE="0 0 0 1 1 *", SAMPLE_QUEUE=f"shutdown{sig}-work",
        SAMPLE_STORAGE=azurite.connection_string,
    )
    host = start_devhost(tmp_path, env, host_json=SAMPLE_HOST_JSON, events=True)
    events = host.wait_for(lambda ev: any(e["kind"] == "tick" for e in ev), 5, "the run_on_startup tick")
    assert [e["past_due"] for e in events if e["kind"] == "tick"] == [False]
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(host.get, "/api/wait/1200")
        time.sleep(0.4)
        started = time.monotonic()
        host.proc.send_signal(sig)
        response = slow.result(timeout=10)
    assert response.status_code == 200
    code = host.terminate(None, timeout=15)  # already signalled once
    assert code == 0, f"exit code {code}\n{host.log()}"
    assert time.monotonic() - started < 10
    assert "Host stopped" in host.log()
    assert len([e for e in host.events() if e["kind"] == "tick"]) == 1
