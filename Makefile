# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: install bytecode run lint test test-reliability test-flows-replicas browser test-fast contracts contracts-check lock bench down status clean

# .venv with every package of the repository (editable) and the locked dependencies, their
# bytecode compiled (below).
install: $(VENV)/.installed
$(VENV)/.installed: uv.lock pyproject.toml contracts/pyproject.toml $(wildcard services/*/pyproject.toml)
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install --quiet "uv==$(UV_VERSION)"; }
	$(UV) sync --frozen --all-packages --inexact --compile-bytecode
	@touch $@

# The bytecode of the repository's own code, brought up to date (only what changed). Where
# PYTHONDONTWRITEBYTECODE is set, as on our CI machine, no process writes its .pyc: every
# service, command and test process compiled some 900 modules again as it started, 1.8 s of
# PSAD's 2.8 s to listen (360 such starts in the crash matrix alone).
bytecode: install
	@$(VENV)/bin/python -m compileall -q -j 0 services contracts tests bench

# Start NATS, PostgreSQL and every service, run the services' main jobs; Ctrl-C stops it all.
run: bytecode
	$(VENV)/bin/raccrochage up --main-jobs

# ruff's checks (SLF001 among them: no private name of a library) and its formatting, unchanged.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint browser bytecode
	$(VENV)/bin/python -m pytest

# Debian's chromium for ops' dashboard test (Playwright drives it; no browser download). Installed
# when missing if we are root and apt-get exists; otherwise that test skips and says how.
browser:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }; \
	  else echo "no /usr/bin/chromium: ops' browser test will skip (as root: apt-get install -y chromium)"; fi; }

test-fast: bytecode
	$(VENV)/bin/python -m pytest -m "not slow and not reliability"

# The long runs of tests/reliability (20 crashes per point of the crash matrix, servers stopped
# and paused for long), and the rig's cluster node killed under its supervisor: `make test` runs
# their quick variants. The soak (ten minutes at a set pace, a fraction of one core) runs beside
# the others in a pytest of its own, its output printed after theirs: the suite takes the time
# of the longer of the two, not their sum.
SOAK := tests/reliability/test_soak.py
test-reliability: bytecode
	@work=$$(mktemp -d); \
	$(VENV)/bin/python -m pytest $(SOAK) -m reliability --basetemp=$$work/soak >$$work/soak.log 2>&1 & soak=$$!; \
	$(VENV)/bin/python -m pytest tests/reliability tests/rig/test_cluster_supervision.py -m reliability \
	  --ignore=$(SOAK) --basetemp=$$work/others; others=$$?; \
	wait $$soak; soaked=$$?; \
	echo "=== $(SOAK), run beside the others (exit $$soaked) ==="; cat $$work/soak.log; \
	if test $$others = 0 -a $$soaked = 0; then rm -rf $$work; else echo "their files: $$work"; exit 1; fi

# The flow tests with two processes of every service (`raccrochage up --replicas 2`);
# `make test-reliability` runs them too (tests/reliability/test_flows_on_replicas.py).
test-flows-replicas: bytecode
	RACCROCHAGE_REPLICAS=2 $(VENV)/bin/python -m pytest tests/flows -o timeout=900

# Regenerate JSON Schemas and AsyncAPI documents from the contract models.
contracts: install
	$(VENV)/bin/python -m raccrochage_contracts.generate

contracts-check: install
	$(VENV)/bin/python -m raccrochage_contracts.generate --check

lock:
	$(UV) lock

# Every benchmark, one after the other (several minutes); `make bench BENCH=psad` runs one.
BENCHES ?= relay ingest partner_latency psad psad_latency ops mlds foquale clause
bench: bytecode
	@for b in $(if $(BENCH),$(BENCH),$(BENCHES)); do echo "== bench/$$b.py"; $(VENV)/bin/python bench/$$b.py || exit 1; done

status: install
	$(VENV)/bin/raccrochage status

down: install
	$(VENV)/bin/raccrochage down

clean:
	rm -rf $(VENV) .rig
