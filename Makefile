# gradtrace. `make demo` sets up .venv and runs the main job; `make test` also installs the Debian packages the tests
# use (redis-server, rabbitmq-server, graphviz, chromium) when missing, then runs ruff and the tests. `make bench`
# runs the benchmark (bench/README.md), `make bench-quick` its ~1 minute smoke mode; `make compose-test` brings the
# docker-compose stack up with podman and tests it (deploy/compose-test).
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: demo test setup bench bench-quick compose-test

demo:
	deploy/setup
	.venv/bin/gradtrace run examples/chain_rule.py

test:
	deploy/setup --system
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

setup:
	deploy/setup

bench:
	$(PYTHON) -m bench --huge

bench-quick:
	$(PYTHON) -m bench --quick

compose-test:
	deploy/compose-test
