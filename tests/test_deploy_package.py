"""What `func azure functionapp publish` ships: .funcignore leaves exactly the app, and the app runs
from those files alone (no devhost, emulator, bench or tests beside it)."""
from __future__ import annotations

import ast
import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parents[1]
APP_FILES = {"function_app.py", "host.json", "requirements.txt"}
APP_PACKAGES = ("functions/", "sync_core/")
DEV_ONLY = ("devhost", "m365_emulator", "bench", "tests")
# The operator CLI reads a local.settings.json with the development host's reader when asked to;
# in Azure the settings are app settings, and without devhost it says so (see sync_core/__main__.py).
ALLOWED_DEV_IMPORTS = {("sync_core/__main__.py", "devhost.settings_file")}
APP_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                           "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
    "GRAPH_CLIENT_SECRET": "a-client-secret",
    "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(bytes(range(32))).decode(),
    "PUBLIC_BASE_URL": "https://crm365sync.example.net",
    "CRM_LAUNCH_SECRET": "s" * 40,
}


def _funcignore() -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((ROOT / ".funcignore").read_text(encoding="utf-8").splitlines())


def _tracked() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def _shipped() -> list[str]:
    spec = _funcignore()
    return sorted(name for name in _tracked() if not spec.match_file(name))


def test_only_the_app_ships() -> None:
    tracked = _tracked()
    expected = APP_FILES | {name for name in tracked if name.startswith(APP_PACKAGES)}
    assert set(_shipped()) == expected
    assert any(name.startswith("sync_core/web/templates/") for name in expected)  # the pages need them


def test_local_state_and_tools_never_ship_and_a_local_build_does() -> None:
    spec = _funcignore()
    for local in (".venv/bin/python", "node_modules/azurite/package.json", ".data/azurite/db.json",
                  "local.settings.json", "test-artifacts/log.txt", "sync_core/__pycache__/settings.cpython-311.pyc",
                  ".git/config", ".mypy_cache/3.11/x.json", ".pytest_cache/v", "requirements-dev.lock"):
        assert spec.match_file(local), local
    assert not spec.match_file(".python_packages/lib/site-packages/msal/__init__.py")


def _imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_shipped_code_imports_no_development_package() -> None:
    found = {(name, module) for name in _shipped() if name.endswith(".py")
             for module in _imported_modules((ROOT / name).read_text(encoding="utf-8"))
             if module.split(".")[0] in DEV_ONLY}
    assert found == ALLOWED_DEV_IMPORTS


def test_the_shipped_files_alone_import_and_register_every_function(tmp_path: Path) -> None:
    package = tmp_path / "package"
    for name in _shipped():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, package / name)
    probe = """
import json, sys
import function_app
from sync_core.settings import get_settings
from sync_core.web.render import render
get_settings()
functions = sorted(f.get_function_name() for f in function_app.app.get_functions())
page = render("message.html", title="t", message="m", hint="", link=None, banners=[])
dev = sorted(m for m in sys.modules if m.split(".")[0] in ("devhost", "m365_emulator", "bench", "tests"))
print(json.dumps({"functions": functions, "dev": dev, "page": len(page),
                  "origin": function_app.__file__}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("DEVHOST_", "AzureWebJobs"))}
    done = subprocess.run([sys.executable, "-c", probe], cwd=package, env={**env, **APP_SETTINGS},
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["origin"]).parent == package
    assert report["dev"] == []
    assert report["page"] > 0
    # The repository's own app, in a process of its own: the Functions library refuses a second
    # get_functions() on one app object, and other tests of this session may have called it.
    own = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**env, **APP_SETTINGS},
                         capture_output=True, text=True, timeout=180, check=False)
    assert own.returncode == 0, own.stderr
    registered = json.loads(own.stdout.strip().splitlines()[-1])["functions"]
    assert {"health", "launch", "sync_timer", "sync_worker", "graph_notifications"} <= set(registered)
    assert report["functions"] == registered


def test_a_local_settings_file_without_devhost_is_a_clear_configuration_error(tmp_path: Path) -> None:
    package = tmp_path / "package"
    for name in _shipped():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, package / name)
    (package / "local.settings.json").write_text(json.dumps({"Values": APP_SETTINGS}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("DEVHOST_", "AzureWebJobs"))}
    done = subprocess.run([sys.executable, "-m", "sync_core", "launch-link", "--tenant", "t", "--user", "u"],
                          cwd=package, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "local.settings.json" in done.stderr and "app settings" in done.stderr


def test_importing_the_app_loads_no_graph_sdk_until_a_session_opens() -> None:
    """msgraph-sdk's generated models cost seconds to import; a cold start that serves a page, a
    webhook or the timer must not pay for them (bench/coldstart.py measures the difference)."""
    probe = """
import json, sys
import function_app
before = sorted(m for m in sys.modules if m.startswith(("msgraph", "kiota_")))
from sync_core.adapters.graph.session import GraphSession
from sync_core.adapters.tokens import StaticTokenCredential
session = GraphSession("http://127.0.0.1:9/v1.0", StaticTokenCredential(lambda: ("t", 2**31)))
session.close()
after = sum(1 for m in sys.modules if m.startswith("msgraph.generated"))
print(json.dumps({"before": before, "after": after}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVHOST_", "AzureWebJobs"))}
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**env, **APP_SETTINGS},
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["before"] == []
    assert report["after"] > 0  # the session did load the SDK: the check above can see it
