"""`python -m devhost.run` (what `make run` calls), with its state in a temporary directory."""
from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from azure.storage.queue import QueueServiceClient
from devhost_harness import clean_environ

from devhost.procs import spawn, wait_until

ROOT = Path(__file__).resolve().parents[2]
START_BUDGET = 60.0


def _run_once(tmp_path: Path, env: dict[str, str], name: str) -> tuple[dict[str, Any], str, str]:
    """Start devhost.run, check /api/health, touch storage, Ctrl-C it, and check that nothing is left running."""
    out = tmp_path / f"{name}.out"
    stack_file = Path(env["DEVHOST_DATA_DIR"]) / "stack.json"
    started = time.monotonic()
    proc = spawn([sys.executable, "-m", "devhost.run"],
                 log_path=out, env=env, cwd=ROOT)
    try:
        wait_until(stack_file.exists, START_BUDGET, "devhost.run", proc)
        stack = json.loads(stack_file.read_text())
        with httpx.Client(timeout=10, trust_env=False) as client:
            health = client.get(stack["devhost"] + "/api/health")
        assert time.monotonic() - started < START_BUDGET
        assert health.status_code == 200, out.read_text()
        assert health.json()["storage"]["ok"] is True
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(children) >= 2, children  # at least Azurite and the development host
        marker = _touch_storage(stack["azurite"]["connection_string"], name)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, out.read_text()
    left = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"still running after Ctrl-C: {left}"
    return stack, out.read_text(), marker


def _touch_storage(connection_string: str, name: str) -> str:
    """Create a queue, then report every queue this test created so far (to see data survive a restart)."""
    service = QueueServiceClient.from_connection_string(connection_string)
    service.create_queue(f"runtest-{name}-{secrets.token_hex(3)}")
    return ",".join(sorted(q.name for q in service.list_queues(name_starts_with="runtest-")))


def test_make_run_serves_health_stops_everything_and_reuses_its_data(tmp_path: Path) -> None:
    settings_path = tmp_path / "local.settings.json"
    env = clean_environ(DEVHOST_DATA_DIR=str(tmp_path / "data"), DEVHOST_SETTINGS_FILE=str(settings_path))

    _, first_out, first_queues = _run_once(tmp_path, env, "first")
    assert "created with generated secrets" in first_out
    assert "/api/health" in first_out.split("Open ")[1].splitlines()[0]
    emulator_lines = [line for line in first_out.splitlines() if "emulator" in line.lower()]
    assert len(emulator_lines) == 1, emulator_lines
    assert "Stopped." in first_out
    generated = settings_path.read_text()
    values = json.loads(generated)["Values"]
    assert len(values["DEVHOST_FUNCTION_KEY"]) >= 32 and values["AzureWebJobsStorage"]

    _, second_out, second_queues = _run_once(tmp_path, env, "second")
    assert "(reused)" in second_out
    # Same secrets, and Azurite kept the first run's queue.
    assert settings_path.read_text() == generated
    assert set(first_queues.split(",")) < set(second_queues.split(","))
