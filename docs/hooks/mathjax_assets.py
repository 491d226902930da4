"""MkDocs hook: serve MathJax from the site itself, so formulas render with no network.

`make docs` installs the npm package `mathjax` (the exact version pinned in
`scripts/check_site/package-lock.json`) into `.venv/docs-js/` with `npm ci`; this hook checks
it is there before the build and copies its browser bundle into `site/assets/mathjax/` after
it. `mkdocs.yml` loads `assets/mathjax/tex-mml-chtml.js`, which finds its fonts and the TeX
extensions it loads on demand under the same folder. `DOCS_JS_DIR` overrides where the
npm packages live.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mkdocs.exceptions import PluginError

# The combined component the site loads, and the folders it fetches from at run time:
# CommonHTML fonts, TeX extensions (autoload, \require), the menu's accessibility tools.
_BUNDLE = "tex-mml-chtml.js"
_RUNTIME_DIRS = ("output/chtml", "input/tex/extensions", "input/mml", "a11y", "sre", "ui", "adaptors")
_TARGET = Path("assets") / "mathjax"


def _mathjax_dir(config) -> Path:
    root = Path(config["config_file_path"]).resolve().parent
    js_dir = root / os.environ.get("DOCS_JS_DIR", ".venv/docs-js")  # relative to the repository
    return js_dir / "node_modules" / "mathjax"


def on_config(config, **kwargs):
    package = _mathjax_dir(config)
    if not (package / "es5" / _BUNDLE).is_file():
        raise PluginError(
            f"MathJax is not installed at {package}: run `make docs` (it runs `npm ci` in "
            ".venv/docs-js from scripts/check_site/package-lock.json), or set DOCS_JS_DIR to a "
            "folder whose node_modules/ holds the `mathjax` package."
        )
    return config


def on_post_build(config, **kwargs):
    package = _mathjax_dir(config)
    target = Path(config["site_dir"]) / _TARGET
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(package / "es5" / _BUNDLE, target / _BUNDLE)
    for sub in _RUNTIME_DIRS:
        if (package / "es5" / sub).is_dir():
            shutil.copytree(package / "es5" / sub, target / sub)
    shutil.copy2(package / "LICENSE", target / "LICENSE")
    version = json.loads((package / "package.json").read_text())["version"]
    (target / "VERSION").write_text(f"mathjax {version} (npm)\n")
