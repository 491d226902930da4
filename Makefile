# The README's two commands: `make run` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run verify test equivalence bench docs docs-serve docs-figures clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/python -m eqx_impl train --config configs/digits.yaml

verify: $(BIN)/.installed
	$(BIN)/python -m reference

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

equivalence: $(BIN)/.installed
	$(BIN)/python -m pytest -k equivalence -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/eqx_vs_reference.py

# Documentation (mkdocs-material + mkdocstrings): `make docs` builds site/ and fails on any
# warning (broken link, anchor or API reference); `make docs-serve` previews it live.
$(BIN)/.docs-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[docs]"
	touch $@

docs: $(BIN)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(BIN)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-figures: $(BIN)/.installed
	$(BIN)/python scripts/make_figures.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
