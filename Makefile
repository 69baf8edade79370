# YWMessaging: `make run` brings the whole system up; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install services browser deploy-tools migrate seed-demo bench clean screenshots

# An unset YWM_ENV is production, which refuses the development secrets in this repository:
# every target here runs a development box unless YWM_ENV says otherwise.
YWM_ENV ?= development
export YWM_ENV

run: install services
	@$(BIN)/python -m server dev

# The browser is installed before pytest starts, so no browser test is ever collected
# without one (tests/handlers/test_docs.py fails, never skips, when it is missing).
test: install services browser deploy-tools
	@$(BIN)/python -m pytest $(PYTEST_ARGS)
	@deploy/pgbouncer/install.sh >/dev/null
	@echo "make test: the database-heavy tests again, through PgBouncer (transaction mode)"
	@YWM_TEST_THROUGH_PGBOUNCER=1 $(BIN)/python -m pytest $(PGBOUNCER_TESTS) $(PYTEST_ARGS)

# Run a second time through a private PgBouncer with a 2-connection pool and no reset query
# (tests/pgbouncer.py), where a statement that relies on session state fails. Services and
# workers hold the transactions, leases and concurrent lanes; the 5,000-recipient run is a
# throughput test of the same statements and would double the time. The archive's SIGKILL
# test holds a row lock on one of the pool's two server connections while the archiver
# blocks on the other, so its own polling query can never be served there.
PGBOUNCER_TESTS := tests/services tests/workers \
	--deselect tests/workers/test_sends_e2e.py::test_5000_recipients_all_delivered \
	--deselect tests/services/test_archive.py::test_sigkill_mid_archive_then_rerun_gives_the_complete_identical_manifest

install: $(STAMP)

$(STAMP): setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

services:
	@deploy/local/services.sh

browser: install
	@deploy/local/browser.sh

# Debian's nginx, redis-sentinel and promtool for tests/deploy/ (the tests also install
# them when missing).
deploy-tools:
	@deploy/nginx/ensure-nginx.sh >/dev/null
	@deploy/redis/ensure-sentinel.sh >/dev/null
	@deploy/prometheus/ensure-promtool.sh >/dev/null

migrate: install services
	@$(BIN)/ywm migrate

seed-demo: migrate
	@$(BIN)/ywm seed-demo

bench: install services
	@$(BIN)/python -m bench

# docs/webapp/*.png and docs/webapp.md's screenshot table (tests/webapp/screenshots.py).
screenshots: install services browser
	@$(BIN)/python -m tests.webapp.screenshots

clean:
	rm -rf $(VENV) var *.egg-info
