# The two commands of the README. Both install what they need first (scripts/install.sh).
PYTHON ?= python3

.PHONY: demo test install lint bench

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

demo: install
	$(PYTHON) -m broker demo $(DEMO_ARGS)

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

lint:
	ruff check .
	mypy

bench: install
	$(PYTHON) -m broker bench $(BENCH_ARGS)
