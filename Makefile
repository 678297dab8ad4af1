# Grantry — the README's commands. Everything installs itself into .venv, from the
# hashed locks (requirements*.txt, compiled from requirements*.in by `make lock`).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
UV     := $(BIN)/uv
# make run: production's lock plus the embedded PostgreSQL. Tests, lint and audit add the dev lock.
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed
RUN_LOCKS := -r requirements.txt -r requirements-local.txt
UV_INSTALL := $(UV) pip install --quiet --require-hashes --compile-bytecode --python $(BIN)/python

.PHONY: chaos chaos-smoke cluster cluster-smoke cluster-tools run manage verify test lint audit lock bench bench-audit bench-smoke bench-audit-smoke venv venv-run browser rsyslog openapi-corpus mcp-servers oidc-issuer bubblewrap pgbouncer clean

venv: $(STAMP)
venv-run: $(RUN_STAMP)

# uv, pinned and hash-checked, is the one thing pip installs. uv compiles the bytecode at
# install (in parallel, once), not the first web, worker and beat processes all at once.
$(UV): requirements-uv.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-uv.txt
	touch $(UV)

$(RUN_STAMP): $(UV) requirements.txt requirements-local.txt
	$(UV_INSTALL) $(RUN_LOCKS)
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements-dev.txt
	$(UV_INSTALL) $(RUN_LOCKS) -r requirements-dev.txt
	touch $(STAMP)

## Recompile the locks after editing a requirements*.in (pip-tools; every package pinned, with hashes).
LOCK := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock: venv
	$(LOCK) -o requirements-uv.txt requirements-uv.in
	$(LOCK) -o requirements.txt requirements.in
	$(LOCK) -o requirements-local.txt requirements-local.in
	$(LOCK) -o requirements-dev.txt requirements-dev.in

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

# Real public API descriptions for the OpenAPI import tests (Twilio, Stripe, Slack, Box,
# GitHub, Vercel, Netlify…): npm packages pinned with their integrity hashes in
# tests/data/openapi-corpus/package-lock.json, installed by `npm ci` (which checks them)
# into var/openapi-corpus. Never committed; tests/data/openapi-corpus/README.md names them.
CORPUS := var/openapi-corpus
$(CORPUS)/.installed: tests/data/openapi-corpus/package.json tests/data/openapi-corpus/package-lock.json
	@command -v npm >/dev/null || { \
	  echo "Installing Debian's npm for the OpenAPI corpus…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm) >/dev/null; }
	mkdir -p $(CORPUS)
	cp tests/data/openapi-corpus/package.json tests/data/openapi-corpus/package-lock.json $(CORPUS)/
	cd $(CORPUS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@
openapi-corpus: $(CORPUS)/.installed

# Real MCP servers and the TypeScript SDK (its example servers and client) for the gateway
# tests, pinned with their integrity hashes in tests/data/mcp-servers/package-lock.json and
# installed by `npm ci` (which checks them) into var/mcp-servers; tests start `node` on
# them directly, never `npx`. bubblewrap (Debian's) runs the stdio servers.
MCP_SERVERS := var/mcp-servers
$(MCP_SERVERS)/.installed: tests/data/mcp-servers/package.json tests/data/mcp-servers/package-lock.json
	@command -v npm >/dev/null || { \
	  echo "Installing Debian's npm for the MCP servers…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm) >/dev/null; }
	mkdir -p $(MCP_SERVERS)
	cp tests/data/mcp-servers/package.json tests/data/mcp-servers/package-lock.json $(MCP_SERVERS)/
	cd $(MCP_SERVERS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	# npm's cache, for apps/isolation/tests/test_packages.py's offline `mcp_install`: an
	# offline install needs every package's registry document cached, which `npm ci`
	# (tarballs only) leaves out. Scripts off, into a directory thrown away.
	rm -rf $(MCP_SERVERS)/.cache-warm
	npm install --prefix $(MCP_SERVERS)/.cache-warm --ignore-scripts --no-audit --no-fund \
	  --no-save --loglevel=error @modelcontextprotocol/server-everything@2026.8.31
	rm -rf $(MCP_SERVERS)/.cache-warm
	touch $@
mcp-servers: $(MCP_SERVERS)/.installed bubblewrap

# A real OpenID Connect issuer (oidc-provider) for the workload-identity exchange tests,
# pinned in tests/data/oidc-issuer/package-lock.json and installed by `npm ci` into
# var/oidc-issuer; the tests start tests/data/oidc-issuer/issuer.mjs with `node`.
OIDC_ISSUER := var/oidc-issuer
$(OIDC_ISSUER)/.installed: tests/data/oidc-issuer/package.json tests/data/oidc-issuer/package-lock.json $(MCP_SERVERS)/.installed
	mkdir -p $(OIDC_ISSUER)
	cp tests/data/oidc-issuer/package.json tests/data/oidc-issuer/package-lock.json $(OIDC_ISSUER)/
	cd $(OIDC_ISSUER) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@
oidc-issuer: $(OIDC_ISSUER)/.installed
bubblewrap:
	@test -x /usr/bin/bwrap || { \
	  echo "Installing Debian's bubblewrap for the stdio MCP servers…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap) >/dev/null; }

# PgBouncer (Debian's) for the exact-revocation test and the bench run through it in
# transaction-pooling mode (scripts/pgbouncer.py starts its own on a free port).
pgbouncer:
	@test -x /usr/sbin/pgbouncer || { \
	  echo "Installing Debian's pgbouncer for the transaction-pooling tests…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer) >/dev/null; }

# The multi-node topology's parts (make cluster, tests/test_cluster.py): Debian's
# HAProxy, PgBouncer and redis-server.
cluster-tools:
	@{ test -x /usr/sbin/haproxy && test -x /usr/sbin/pgbouncer && test -x /usr/bin/redis-server; } || { \
	  echo "Installing Debian's haproxy, pgbouncer and redis-server for the cluster…"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy pgbouncer redis-server) >/dev/null; }

## The multi-node topology on this machine: HAProxy on PORT, two web nodes, PgBouncer,
## Redis, two workers, two beats (docs/operations.md). Ctrl-C stops it.
cluster: venv-run cluster-tools
	PORT=$(PORT) $(BIN)/python scripts/cluster.py

## CI: start the cluster, call through node A, revoke through node B, stop.
cluster-smoke: venv cluster-tools
	PORT=$(PORT) $(BIN)/python scripts/cluster.py --smoke

## Faults under load on the cluster (kill -9 a web node and the workers, restart Redis,
## PgBouncer and PostgreSQL), then what was lost: a table, exit 1 if anything was.
chaos: venv-run cluster-tools
	$(BIN)/python scripts/chaos.py

## CI: the same run with short phases.
chaos-smoke: venv cluster-tools
	$(BIN)/python scripts/chaos.py --phase 3 --clients 2

## Start the whole product: embedded PostgreSQL (var/pgdata) + web + worker + scheduler.
## No Redis needed. Writes the development environment to var/dev.env.
run: venv-run
	PORT=$(PORT) $(BIN)/python scripts/run_dev.py

## One manage.py command against make run's database, e.g. make manage ARGS="audit_verify".
## Works whether make run is running or not (it starts the embedded PostgreSQL if needed).
manage: venv-run
	PORT=$(PORT) $(BIN)/python scripts/run_dev.py manage $(ARGS)

## Verify the audit hash chains of make run's database.
verify: venv-run
	PORT=$(PORT) $(BIN)/python scripts/run_dev.py manage audit_verify

## Run the whole test suite (PostgreSQL/Redis when they answer, else the embedded
## PostgreSQL under var/ and in-memory cache/broker), in two passes: the suite on two
## pytest-xdist workers, then the modules that time or race something (conftest.py,
## SERIAL_MODULES) alone. PYTEST_ARGS (e.g. a path) apply to both; a pass that selects
## no test (pytest's exit status 5) is not a failure.
# "Alone": the serial pass first takes SERIAL_LOCK, which anything else heavy running
# beside `make test` holds while it runs (.ci/run's smoke runs, during the parallel
# pass); with nothing else holding it, taking it costs nothing.
SERIAL_LOCK := var/test-serial.lock
test: venv browser rsyslog openapi-corpus mcp-servers oidc-issuer cluster-tools
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not serial" --durations=30 $(PYTEST_ARGS) \
	  || test $$? -eq 5
	mkdir -p var
	flock $(SERIAL_LOCK) $(BIN)/python -m pytest -m serial --durations=15 $(PYTEST_ARGS) \
	  || test $$? -eq 5

## ruff, ruff format, mypy, and the app layers (import-linter, pyproject.toml).
# The house rules import-linter cannot express, checked by reading the source (no database):
# upward look-ups, module names, audit action names, lint exemptions, tenant rows in views,
# the one token lifecycle.
# `make lint` runs them; so does `make test`.
STRUCTURE_TESTS := tests/test_layers.py tests/test_module_names.py tests/test_audit_actions.py \
	tests/test_lint_exemptions.py tests/test_tenant_rows.py tests/test_token_lifecycle.py
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PYTHONPATH=cli $(BIN)/lint-imports
	$(BIN)/pytest -q -p no:cacheprovider $(STRUCTURE_TESTS)

## Known vulnerabilities in every pinned package of the locks (PyPI's advisory data via
## pip-audit). First the locks must resolve on their own, every package of the tree pinned
## with a hash (into an empty target, so the installed venv hides nothing); then pip-audit
## reads the pins without resolving again. --strict: a package it cannot find or audit fails.
ALL_LOCKS := $(RUN_LOCKS) -r requirements-dev.txt -r requirements-uv.txt
audit: venv
	rm -rf var/lock-check
	$(UV) pip install --quiet --dry-run --require-hashes --python $(BIN)/python \
	  --target var/lock-check $(ALL_LOCKS)
	rm -rf var/lock-check
	$(BIN)/pip-audit --strict --progress-spinner off --disable-pip $(ALL_LOCKS)

bench: venv mcp-servers pgbouncer
	$(BIN)/python scripts/bench.py

## The audit trail at scale: seeds AUDIT_BENCH_EVENTS (default 10M) events into its own database.
bench-audit: venv
	$(BIN)/python scripts/bench_audit.py

## Both benchmarks end to end with tiny numbers (about a minute each; .ci/run runs them):
## they prove the scripts work, not how fast anything is.
# They run the `bench` and `bench-audit` targets themselves, so CI exercises what a user runs.
bench-smoke:
	BENCH_SMOKE=1 $(MAKE) bench

bench-audit-smoke:
	AUDIT_BENCH_SMOKE=1 $(MAKE) bench-audit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache var/
