"""`python -m sync_core launch-link` (what `make run` tells the operator to use) against the running app:
the link it prints opens the settings page, and a lifetime the app would refuse is refused up front."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from sync_core.web.auth import LAUNCH_MAX_LIFETIME, SESSION_COOKIE
from tests.functions.stack import ROOT, Stack, clean_environ


def _launch_link(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync_core", "launch-link", *args],
                          env=clean_environ(PYTHONPATH=str(ROOT), **stack.env), cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_default_link_lives_as_long_as_the_app_accepts_and_opens_the_settings_page(
        stack: Stack, tmp_path: Path) -> None:
    tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    asked = time.time()
    done = _launch_link(stack, tmp_path, "--tenant", tenant, "--user", user)
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip()
    assert link.startswith(f"{stack.url}/api/launch?")
    # The default is the app's own ceiling, not a second number that can drift from it.
    expires = int(parse_qs(urlsplit(link).query)["exp"][0])
    assert asked + LAUNCH_MAX_LIFETIME - 1 <= expires <= time.time() + LAUNCH_MAX_LIFETIME
    with httpx.Client(timeout=30, trust_env=False, follow_redirects=False) as browser:
        opened = browser.get(link)
        assert opened.status_code == 303, opened.text
        assert opened.headers["location"] == "/api/settings"
        assert browser.cookies.get(SESSION_COOKIE)
        page = browser.get(f"{stack.url}/api/settings")
        assert page.status_code == 200
        assert "Not connected to Microsoft 365" in page.text


def test_a_lifetime_the_app_would_refuse_is_an_argument_error(stack: Stack, tmp_path: Path) -> None:
    too_long = _launch_link(stack, tmp_path, "--tenant", "t", "--user", "u", "--lifetime", str(LAUNCH_MAX_LIFETIME + 1))
    assert too_long.returncode == 2
    assert too_long.stdout == ""
    assert f"the app refuses launch links that live longer than {LAUNCH_MAX_LIFETIME} s" in too_long.stderr
    for bad in ("0", "-5", "ten"):
        refused = _launch_link(stack, tmp_path, "--tenant", "t", "--user", "u", "--lifetime", bad)
        assert refused.returncode == 2 and "--lifetime" in refused.stderr and refused.stdout == ""


def test_a_shorter_lifetime_is_honoured(stack: Stack, tmp_path: Path) -> None:
    done = _launch_link(stack, tmp_path, "--tenant", stack.new_tenant(), "--user", "u-short", "--lifetime", "30")
    assert done.returncode == 0, done.stderr
    with httpx.Client(timeout=30, trust_env=False, follow_redirects=False) as browser:
        assert browser.get(done.stdout.strip()).status_code == 303
