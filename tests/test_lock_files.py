"""requirements.lock / requirements-dev.lock (what `make` installs with --require-hashes) agree with
requirements*.txt: a pin changed, added or dropped there without `make lock` fails here."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#\\]+)")  # extras kept: name[x]==v


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw).lower()


def _requirements(path: Path) -> dict[str, str]:
    """The == pins of a requirements file, following -r includes."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(_requirements(path.parent / line[3:].strip()))
        elif line:
            found = PIN.match(line)
            assert found, f"{path.name}: {line!r} is not pinned with =="
            pins[_name(found.group(1))] = found.group(2)
    return pins


def _lock(path: Path) -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]]]:
    """(name → version, name → hashes, name → what pulled it in) of a pip-compile lock file."""
    versions: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    via: dict[str, set[str]] = {}
    current = ""
    in_via = False
    for line in path.read_text(encoding="utf-8").splitlines():
        found = PIN.match(line)
        if found:
            current = _name(found.group(1))
            versions[current], hashes[current], via[current] = found.group(2), set(), set()
            in_via = False
        elif line.strip().startswith("--hash=sha256:"):
            hashes[current].add(line.strip().split("=", 1)[1].rstrip(" \\"))
        elif line.startswith("    # via"):
            rest = line.removeprefix("    # via").strip()
            in_via = not rest
            if rest:
                via[current].add(rest)
        elif in_via and line.startswith("    #   "):
            via[current].add(line.removeprefix("    #   ").strip())
    return versions, hashes, via


def _direct(via: dict[str, set[str]], source: str) -> set[str]:
    return {name for name, parents in via.items() if any(p == f"-r {source}" for p in parents)}


def test_the_runtime_lock_pins_exactly_what_requirements_txt_asks_for() -> None:
    wanted = _requirements(ROOT / "requirements.txt")
    versions, hashes, via = _lock(ROOT / "requirements.lock")
    assert {name: versions.get(name) for name in wanted} == wanted
    assert _direct(via, "requirements.txt") == set(wanted)  # a pin dropped from requirements.txt leaves the lock
    assert all(hashes[name] for name in versions), [name for name in versions if not hashes[name]]


def test_the_dev_lock_pins_requirements_dev_txt_and_the_runtime_lock_unchanged() -> None:
    wanted = _requirements(ROOT / "requirements-dev.txt")
    versions, hashes, via = _lock(ROOT / "requirements-dev.lock")
    assert {name: versions.get(name) for name in wanted} == wanted
    own = set(wanted) - set(_requirements(ROOT / "requirements.txt"))
    assert _direct(via, "requirements-dev.txt") == own
    assert _direct(via, "requirements.txt") == set(_requirements(ROOT / "requirements.txt"))
    assert all(hashes[name] for name in versions)
    runtime_versions, runtime_hashes, _ = _lock(ROOT / "requirements.lock")
    # Development runs exactly what Azure runs: every runtime package at the same version and files.
    assert {name: versions.get(name) for name in runtime_versions} == runtime_versions
    assert {name: hashes.get(name) for name in runtime_hashes} == runtime_hashes


def test_the_makefile_installs_the_dev_lock_with_hashes_and_keys_its_stamp_on_both_locks() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = next(line for line in makefile.splitlines() if line.startswith("REQ_STAMP :="))
    assert "requirements.lock" in stamp and "requirements-dev.lock" in stamp
    installs = [line for line in makefile.splitlines() if "pip install" in line and "PIP_TOOLS" not in line]
    assert installs and all("--require-hashes -r requirements-dev.lock" in line for line in installs), installs
