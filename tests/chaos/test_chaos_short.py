"""The short chaos profile (bench/chaos.py) as part of the suite: the whole system for about a minute under
every fault kind, settled and checked. `make chaos` runs the long profile; CHAOS_SEED picks another seed."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.chaos import SHORT, print_summary, run_chaos


@pytest.mark.slow
def test_short_chaos_run_settles_with_both_sides_agreeing(tmp_path: Path) -> None:
    seed = int(os.environ.get("CHAOS_SEED", "20261125"))
    summary = run_chaos(SHORT, seed, tmp_path / "chaos", out=tmp_path / f"chaos-short-{seed}.json")
    print_summary(summary)
    assert summary["ok"], "\n".join([f"{name}: {ok}" for name, ok in summary["checks"].items()]
                                    + summary["violations"][:40])
    assert summary["seconds"]["total"] < 120, summary["seconds"]
