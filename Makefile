# The two commands of README.md: `make run` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PY := .venv/bin/python
REQ_STAMP := .venv/.req-$(shell cat requirements.txt requirements-dev.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: run test bench chaos install venv node chromium clean

run: install
	@$(PY) -m devhost.run

test: install chromium
	@$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	@$(PY) -m bench $(BENCH_ARGS)

chaos: install
	@$(PY) -m bench.chaos $(CHAOS_ARGS)

install: venv node

venv: $(REQ_STAMP)

$(REQ_STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv .venv
	@echo "Installing Python dependencies into .venv (once per requirements change)..."
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@rm -f .venv/.req-* && touch $@

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
	rm -rf .data test-artifacts .pytest_cache
