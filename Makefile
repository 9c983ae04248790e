# The two commands of README.md: `make run` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PY := .venv/bin/python
# The installed set is requirements-dev.lock (every transitive dependency, with hashes); `make lock`
# regenerates both lock files from requirements*.txt with a pinned pip-tools.
REQ_STAMP := .venv/.req-$(shell cat requirements.lock requirements-dev.lock 2>/dev/null | sha1sum | cut -c1-12)
PIP_TOOLS := pip-tools==7.7.0
PIP_COMPILE_FLAGS := --quiet --generate-hashes --allow-unsafe --no-strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: run test typecheck bench chaos install venv node chromium lock clean

run: install
	@$(PY) -m devhost.run

test: install chromium typecheck
	@$(PY) -m pytest $(PYTEST_ARGS)

# The deployed code (mypy.ini names it) must type-check; an error fails `make test` before pytest runs.
typecheck: install
	@$(PY) -m mypy --config-file mypy.ini

bench: install
	@$(PY) -m bench $(BENCH_ARGS)

chaos: install
	@$(PY) -m bench.chaos $(CHAOS_ARGS)

install: venv node

venv: $(REQ_STAMP)

$(REQ_STAMP): requirements.lock requirements-dev.lock
	@test -x $(PY) || python3 -m venv .venv
	@echo "Installing Python dependencies into .venv from requirements-dev.lock (once per lock change)..."
	@$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.lock
	@rm -f .venv/.req-* && touch $@

# Regenerate the lock files after changing requirements*.txt (tests/test_lock_files.py fails until
# then). Only PyPI is consulted, so the hashes are PyPI's whatever the local pip configuration adds.
lock:
	@test -x .venv-lock/bin/pip-compile || { python3 -m venv .venv-lock && .venv-lock/bin/pip install -q $(PIP_TOOLS); }
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .venv-lock/bin/pip-compile $(PIP_COMPILE_FLAGS) --output-file requirements.lock requirements.txt
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .venv-lock/bin/pip-compile $(PIP_COMPILE_FLAGS) --output-file requirements-dev.lock requirements-dev.txt

node: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	@echo "Installing Azurite from package-lock.json..."
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Browser tests use Debian's chromium (Playwright's own browser download cannot work offline).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "Installing Debian's chromium for the browser tests..."; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| { echo "Could not install chromium with apt-get."; exit 1; }; \
	else \
		echo "Browser tests need Debian's chromium: run 'sudo apt-get install chromium' (they are skipped until then)."; \
	fi

clean:
	rm -rf .data test-artifacts .pytest_cache .mypy_cache
