# gradtrace: `make bench` runs the benchmark (bench/README.md); `make bench-quick` is its ~1 minute smoke mode.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: bench bench-quick

bench:
	$(PYTHON) -m bench

bench-quick:
	$(PYTHON) -m bench --quick
