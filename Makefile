# YWMessaging: `make run` brings the whole system up; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install services browser deploy-tools migrate seed-demo bench clean

run: install services
	@$(BIN)/python -m server dev

# The browser is installed before pytest starts, so no browser test is ever collected
# without one (tests/handlers/test_docs.py fails, never skips, when it is missing).
test: install services browser deploy-tools
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

services:
	@deploy/local/services.sh

browser: install
	@deploy/local/browser.sh

# Debian's nginx and promtool for tests/deploy/ (the tests also install them when missing).
deploy-tools:
	@deploy/nginx/ensure-nginx.sh
	@deploy/prometheus/ensure-promtool.sh

migrate: install services
	@$(BIN)/ywm migrate

seed-demo: migrate
	@$(BIN)/ywm seed-demo

bench: install services
	@$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var *.egg-info
