# Grantry — the README's commands. Everything installs itself into .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
STAMP  := $(VENV)/.installed

.PHONY: run manage verify test lint audit bench bench-audit venv browser rsyslog clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Headless Chromium for the browser tests: Debian's package, never a download.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Debian's chromium for the browser tests…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null; }

# rsyslog with TLS (gtls) for the SIEM sink test: Debian's packages, never a download.
rsyslog:
	@{ test -x /usr/sbin/rsyslogd && dpkg -s rsyslog-gnutls >/dev/null 2>&1; } || { \
	  echo "Installing Debian's rsyslog and rsyslog-gnutls for the SIEM sink test…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rsyslog rsyslog-gnutls) >/dev/null; }

## Start the whole product: embedded PostgreSQL (var/pgdata) + web + worker + scheduler.
## No Redis needed. Writes the development environment to var/dev.env.
run: venv
	PORT=$(PORT) $(BIN)/python scripts/run_dev.py

## One manage.py command against make run's database, e.g. make manage ARGS="audit_verify".
## Works whether make run is running or not (it starts the embedded PostgreSQL if needed).
manage: venv
	PORT=$(PORT) $(BIN)/python scripts/run_dev.py manage $(ARGS)

## Verify the audit hash chains of make run's database.
verify: venv
	PORT=$(PORT) $(BIN)/python scripts/run_dev.py manage audit_verify

## Run the whole test suite (PostgreSQL/Redis when they answer, else the embedded
## PostgreSQL under var/ and in-memory cache/broker).
test: venv browser rsyslog
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## ruff, ruff format, mypy, and the app layers (import-linter, pyproject.toml).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Known vulnerabilities in the pinned requirements (PyPI's advisory data via pip-audit).
## --strict: a package pip-audit cannot resolve or audit fails the run.
audit: venv
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements.txt

bench: venv
	$(BIN)/python scripts/bench.py

## The audit trail at scale: seeds AUDIT_BENCH_EVENTS (default 10M) events into its own database.
bench-audit: venv
	$(BIN)/python scripts/bench_audit.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache var/
