# Two entry points (see README.md): `make demo` and `make test`. Both create .venv on first use.
# `make docs` builds the documentation site into site/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs bench lint install notebook clean

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

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link, reference or docstring fails.
# tests/docs/test_docs.py builds it the same way inside `make test`.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check lightning_skd tests benchmarks docs
	$(BIN)/ruff format --check lightning_skd tests benchmarks docs

clean:
	rm -rf $(VENV) lightning_logs outputs notebooks/lightning_logs site
