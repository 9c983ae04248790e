"""Fixtures of the browser tests: the app stack shared with tests/functions, and headless Chromium."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401
from tests.functions.stack import ROOT, log_collector, ms_user, stack, web  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--ignore-certificate-errors"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason="Debian's chromium is not installed at /usr/bin/chromium")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, which would break later tests that run their own loop (msgraph-sdk via asyncio.run).
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Any:
    """shots(page, "step-name"): a full-page screenshot in test-artifacts/browser/<test>/NN-step-name.png."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    counter = {"n": 0}

    def take(page: Any, name: str) -> Path:
        counter["n"] += 1
        path = folder / f"{counter['n']:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
