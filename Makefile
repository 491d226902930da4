# The README's two commands: `make run` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run verify test equivalence bench experiments docs docs-check docs-serve docs-figures clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/python -m eqx_impl train --config configs/digits.yaml

verify: $(BIN)/.installed
	$(BIN)/python -m reference

# pyright: basic mode over eqx_impl, reference and _checks ([tool.pyright] in pyproject.toml).
# pytest: every function of eqx_impl and reference checked at run time by jaxtyping + beartype
# (tests/conftest.py).
test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/pyright
	$(BIN)/python -m pytest -n 2 -q --durations=15

equivalence: $(BIN)/.installed
	$(BIN)/python -m pytest -k equivalence -q

# One table: eqx/reference ratios, adaptive-schedule variance, step overhead, sampler error
# against NFE, U-Net images/s (and MFU on a GPU); see docs/benchmarks.md.
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.suite

# The study of docs/experiments.md: every arm x 5 seeds, both samplers, then the page's
# tables and plots from its JSON. SCALE=cpu (< 90 min on 2 cores), gpu, or smoke.
SCALE ?= cpu
experiments: $(BIN)/.installed
	$(BIN)/python -m experiments.study --scale $(SCALE)
	$(BIN)/python -m experiments.render

# Documentation (mkdocs-material + mkdocstrings): `make docs` builds site/ and fails on any
# warning (broken link, anchor or API reference); `make docs-check` then loads every page in
# headless Chromium (Debian's `chromium`) and fails on what a reader would see wrong
# (scripts/check_site/check_site.mjs); `make docs-serve` previews it live. MathJax, served
# from the site itself, and playwright-core come from the npm registry, at the versions
# pinned in scripts/check_site/package-lock.json, into $(DOCS_JS).
DOCS_JS := $(VENV)/docs-js

$(BIN)/.docs-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[docs]"
	touch $@

$(DOCS_JS)/.installed: scripts/check_site/package.json scripts/check_site/package-lock.json
	mkdir -p $(DOCS_JS)
	cp scripts/check_site/package.json scripts/check_site/package-lock.json $(DOCS_JS)/
	cd $(DOCS_JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

docs: $(BIN)/.docs-installed $(DOCS_JS)/.installed
	NO_MKDOCS_2_WARNING=1 DOCS_JS_DIR=$(DOCS_JS) $(BIN)/mkdocs build --strict

docs-check: docs
	DOCS_JS_DIR=$(DOCS_JS) node scripts/check_site/check_site.mjs site

docs-serve: $(BIN)/.docs-installed $(DOCS_JS)/.installed
	NO_MKDOCS_2_WARNING=1 DOCS_JS_DIR=$(DOCS_JS) $(BIN)/mkdocs serve

docs-figures: $(BIN)/.installed
	$(BIN)/python scripts/make_figures.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
