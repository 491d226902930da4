# The README's two commands: `make run` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test equivalence lint bench docs clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/python -m reference

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

equivalence: $(BIN)/.installed
	$(BIN)/python -m pytest -k equivalence -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
