# Two entry points (see README.md): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint install notebook clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# JupyterLab (the [notebook] extra) only for `make notebook`; the `python3` kernelspec is written into .venv, where
# Jupyter looks first when it runs from a virtual environment, so the notebooks run on this environment's Python.
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,notebook]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (lightning_skd .venv)"
	touch $(NOTEBOOK_STAMP)

# Extra JupyterLab options, e.g. `make notebook NOTEBOOK_ARGS="--no-browser --ip=0.0.0.0"` on a remote machine.
NOTEBOOK_ARGS ?=
notebook: $(NOTEBOOK_STAMP)
	cd notebooks && $(CURDIR)/$(BIN)/jupyter lab $(NOTEBOOK_ARGS)

demo: $(STAMP)
	$(BIN)/python -m lightning_skd.tools.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check lightning_skd tests benchmarks
	$(BIN)/ruff format --check lightning_skd tests benchmarks

clean:
	rm -rf $(VENV) lightning_logs outputs notebooks/lightning_logs
