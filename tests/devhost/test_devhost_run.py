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
from devhost.run import ensure_settings_file, generated_settings, live_overrides
from sync_core.settings import load_settings

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
        # Seeding the demo data comes after the host answers: let it finish before Ctrl-C.
        wait_until(lambda: "Press Ctrl-C" in out.read_text(errors="replace"), START_BUDGET, "the demo seed", proc)
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
    assert any(line.startswith("Open http") and "/api/health" in line for line in first_out.splitlines())
    assert "demo-password" in first_out and "/api/launch?" in first_out  # the demo sign-in and launch link
    emulator_lines = [line for line in first_out.splitlines() if line.startswith("Microsoft 365 emulator")]
    assert len(emulator_lines) == 1, emulator_lines
    assert "Stopped." in first_out
    # The generated settings satisfy every function of the real app (e.g. %SYNC_QUEUE_NAME% resolves).
    assert "is in error" not in first_out, first_out
    generated = settings_path.read_text()
    values = json.loads(generated)["Values"]
    assert len(values["DEVHOST_FUNCTION_KEY"]) >= 32 and values["AzureWebJobsStorage"]

    _, second_out, second_queues = _run_once(tmp_path, env, "second")
    assert "(reused)" in second_out
    # Same secrets, and Azurite kept the first run's queue.
    assert settings_path.read_text() == generated
    assert set(first_queues.split(",")) < set(second_queues.split(","))


EMULATOR = {"graph": "http://127.0.0.1:5001/v1.0", "authority": "https://127.0.0.1:5002/tenant",
            "ca_file": "/tmp/emulator-ca.pem"}


def test_generated_settings_satisfy_the_app_settings_model(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    for emulator in (None, {**EMULATOR, "ca_file": str(ca_file)}):
        document = generated_settings("UseDevelopmentStorage=true", emulator, 7071)
        settings = load_settings(document["Values"])
        assert settings.public_base_url == "http://127.0.0.1:7071"
        assert len(settings.token_key_bytes) == 32
        assert settings.graph_base_url == (emulator["graph"] if emulator else "https://graph.microsoft.com/v1.0")
    # Fresh secrets every time a file is generated.
    first, second = (generated_settings("x", None, 7071)["Values"] for _ in range(2))
    assert first["CRM_LAUNCH_SECRET"] != second["CRM_LAUNCH_SECRET"]


def test_live_stack_overrides_only_local_values() -> None:
    live = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;QueueEndpoint=http://127.0.0.1:20001/x;"
    stale_local = {"AzureWebJobsStorage": live.replace("20001", "10001"),
                   "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
                   "IDENTITY_AUTHORITY": "https://127.0.0.1:4444/old-tenant",
                   "PUBLIC_BASE_URL": "http://127.0.0.1:7071"}
    assert live_overrides(stale_local, live, EMULATOR, "http://127.0.0.1:7099") == {
        "AzureWebJobsStorage": live, "PUBLIC_BASE_URL": "http://127.0.0.1:7099",
        "GRAPH_BASE_URL": EMULATOR["graph"], "IDENTITY_AUTHORITY": EMULATOR["authority"],
        "IDENTITY_CA_FILE": EMULATOR["ca_file"]}
    # A developer who points the file at real Azure and Microsoft keeps those, emulator or not.
    real = {"AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=k;",
            "GRAPH_BASE_URL": "https://graph.example.test/v1.0",
            "IDENTITY_AUTHORITY": "https://login.example.test/tenant",
            "PUBLIC_BASE_URL": "https://sync.example.test"}
    assert live_overrides(real, live, EMULATOR, "http://127.0.0.1:7071") == {}


def test_an_existing_settings_file_only_gains_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"GRAPH_CLIENT_ID": "mine", "CUSTOM": "kept"},
                                "Host": {"LocalHttpPort": 7000}}))
    generated = generated_settings("UseDevelopmentStorage=true", None, 7071)
    written = ensure_settings_file(path, generated)
    assert "GRAPH_CLIENT_ID" not in written and "SYNC_QUEUE_NAME" in written
    document = json.loads(path.read_text())
    assert document["Values"]["GRAPH_CLIENT_ID"] == "mine" and document["Values"]["CUSTOM"] == "kept"
    assert document["Host"] == {"LocalHttpPort": 7000}
    assert path.stat().st_mode & 0o077 == 0
    assert ensure_settings_file(path, generated) == []
