"""The documentation stays true to the code.

- Every public name of `reference` and `eqx_impl` (the non-underscore names their
  `__init__.py` imports) appears in an API page's `::: module` block, under the module it
  is imported from, and every name listed there exists.
- Every tutorial snippet in `docs/snippets/` runs, and every one is included in a page.
- Every test a page cites as `tests/test_x.py::test_name` exists, and every
  `python -m reference` line a page quotes is one the report prints.
- Every figure in `docs/figures/` is shown in a page and is drawn by `scripts/make_figures.py`.
- `mkdocs build --strict` passes (when mkdocs is installed: `make docs` installs it).
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_PAGES = sorted((DOCS / "api").glob("*.md"))
PAGES = sorted(DOCS.rglob("*.md"))
SNIPPETS = sorted((DOCS / "snippets").glob("*.py"))
FIGURES = sorted((DOCS / "figures").glob("*.png"))
PACKAGES = ("reference", "eqx_impl")


# --- public names and API pages ------------------------------------------------------------


def _init_imports(package: str) -> list[ast.ImportFrom]:
    """The `from … import …` statements of `package/__init__.py`, those under
    `if TYPE_CHECKING:` included (the form of lazy re-exports)."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    nodes = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes += [n for n in node.body if isinstance(n, ast.ImportFrom)]
        elif isinstance(node, ast.ImportFrom):
            nodes.append(node)
    return [n for n in nodes if n.module]


def _is_reexport(package: str, module: str) -> bool:
    """A public module of the package itself (not `typing`, not a helper such as `eqx_impl._lazy`)."""
    parts = module.split(".")
    return parts[0] == package and not any(p.startswith("_") for p in parts[1:])


def public_names(package: str) -> dict[str, str]:
    """`{name: module it is imported from}` for the public names of `package/__init__.py`."""
    names = {}
    for node in _init_imports(package):
        if _is_reexport(package, node.module):
            for alias in node.names:
                name = alias.asname or alias.name
                if not name.startswith("_"):
                    names[name] = node.module
    return names


def api_blocks() -> dict[str, set[str] | None]:
    """`{module: documented members}` from every `::: module` block of the API pages.

    `None` means the block has no `members:` list (mkdocstrings then renders all public ones).
    """
    blocks: dict[str, set[str] | None] = {}
    for page in API_PAGES:
        lines = page.read_text().splitlines()
        for k, line in enumerate(lines):
            match = re.match(r"^:::\s+([\w.]+)\s*$", line)
            if not match:
                continue
            members: set[str] | None = None
            in_members = False
            for option in lines[k + 1 :]:
                if not option.startswith(" ") or not option.strip():
                    break  # the block's indented options end here
                stripped = option.strip()
                if stripped.startswith("members:"):
                    in_members, members = True, set()
                    inline = stripped[len("members:") :].strip()
                    if inline.startswith("["):
                        members |= {m.strip(" '\"") for m in inline.strip("[]").split(",") if m.strip()}
                        in_members = False
                elif in_members and stripped.startswith("- "):
                    members.add(stripped[2:].strip(" '\""))
                else:
                    in_members = False
            module = match.group(1)
            if module in blocks and blocks[module] is not None and members is not None:
                blocks[module] |= members
            else:
                blocks[module] = members
    return blocks


@pytest.mark.parametrize("package", PACKAGES)
def test_api_pages_document_every_public_name(package):
    blocks = api_blocks()
    missing = []
    for name, module in sorted(public_names(package).items()):
        documented = module in blocks and (blocks[module] is None or name in blocks[module])
        if not documented:
            missing.append(f"{package}.{name} (from {module})")
    assert not missing, (
        "Public names missing from docs/api/*.md; add each to the `members:` list of the "
        f"`::: <module>` block it is imported from: {', '.join(missing)}"
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_public_names_are_all_imported_in_init(package):
    """A name defined in `__init__.py` itself would escape the check above."""
    module = importlib.import_module(package)
    imported = set(public_names(package))
    helpers = {
        alias.asname or alias.name
        for node in _init_imports(package)
        if not _is_reexport(package, node.module)
        for alias in node.names
    }
    exported = set(getattr(module, "__all__", ())) | set(vars(module))
    stray = sorted(
        name
        for name in exported
        if not name.startswith("_")
        and not isinstance(getattr(module, name, None), type(sys))
        and name not in imported | helpers
    )
    assert not stray, f"{package} has public names not imported from a module, so not checked: {stray}"


def test_api_members_exist():
    stale = []
    for module_name, members in api_blocks().items():
        module = importlib.import_module(module_name)
        stale += [f"{module_name}.{m}" for m in sorted(members or ()) if not hasattr(module, m)]
    assert not stale, f"docs/api lists names that do not exist: {stale}"


# --- snippets ------------------------------------------------------------------------------


def test_there_are_snippets():
    assert {p.name for p in SNIPPETS} >= {"custom_weighting.py", "custom_schedule.py", "own_data.py"}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda p: p.name)
def test_snippet_runs(snippet):
    """Each tutorial program runs to the end (its own asserts check its claims).

    Under JAX's default dtype promotion, as a user runs it (conftest makes tests strict, and
    optax's bias correction raises a weak float to an int32 power).
    """
    import jax

    with jax.numpy_dtype_promotion("standard"), contextlib.redirect_stdout(io.StringIO()) as out:
        runpy.run_path(str(snippet), run_name="__main__")
    assert out.getvalue().strip(), f"{snippet.name} printed nothing"


def test_every_snippet_is_included_in_a_page():
    # Pages include snippets in ```{.python} fences: `ruff format` rewrites ```python blocks
    # in Markdown, which would break the `--8<--` line.
    included = set()
    for page in PAGES:
        included |= set(re.findall(r'--8<--\s+"([^"]+)"', page.read_text()))
    orphans = [p.name for p in SNIPPETS if str(p.relative_to(ROOT)) not in included]
    assert not orphans, f"snippets shown on no page: {orphans}"


# --- citations of tests and of the verification report --------------------------------------


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_cited_tests_exist():
    cited = set()
    for page in PAGES:
        cited |= set(re.findall(r"(tests/test_\w+\.py)::(test_\w+)", page.read_text()))
    assert len(cited) > 20
    missing = [f"{f}::{t}" for f, t in sorted(cited) if not (ROOT / f).is_file() or t not in _test_functions(ROOT / f)]
    assert not missing, f"the docs cite tests that do not exist: {missing}"


def _report_patterns() -> list[re.Pattern]:
    """Regexes for every line label `python -m reference` can print (f-string fields → wildcards)."""
    tree = ast.parse((ROOT / "reference" / "__main__.py").read_text())
    patterns = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [re.escape(v.value) if isinstance(v, ast.Constant) else ".+?" for v in node.values]
            patterns.append(re.compile("".join(parts)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            patterns.append(re.compile(re.escape(node.value)))
    return patterns


def test_quoted_report_lines_exist():
    patterns = _report_patterns()
    quoted = set()
    for page in PAGES:
        quoted |= set(re.findall(r"`python -m reference` → `([^`]+)`", page.read_text()))
    assert len(quoted) > 15
    unknown = sorted(q for q in quoted if not any(p.fullmatch(q) for p in patterns))
    assert not unknown, f"the docs quote report lines that `python -m reference` does not print: {unknown}"


# --- figures -------------------------------------------------------------------------------


def test_every_figure_is_shown():
    shown = set()
    for page in PAGES:
        shown |= {Path(p).name for p in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text())}
    unused = [f.name for f in FIGURES if f.name not in shown]
    assert not unused, f"figures shown on no page: {unused}"


def test_figure_script_draws_every_committed_figure(tmp_path):
    script = ROOT / "scripts" / "make_figures.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True)
    drawn = {p.name for p in tmp_path.glob("*.png")}
    assert drawn == {f.name for f in FIGURES}, "rerun scripts/make_figures.py and commit docs/figures/"


# --- the site builds -----------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None
    or not (ROOT / ".venv" / "docs-js" / "node_modules" / "mathjax").is_dir(),
    reason="mkdocs or MathJax not installed (make docs)",
)
def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- what the site shows a reader (the browser check is `make docs-check`) -----------------

HOOKS = DOCS / "hooks"


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLACEHOLDERS = re.compile(r"to be filled|not yet recorded|not yet tested|\bTODO\b|\bTBD\b|\bFIXME\b", re.IGNORECASE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_pages_have_no_placeholders_and_cite_no_spec(page):
    """A page states results; the specification is not part of the site (the contract page is)."""
    text = page.read_text()
    assert not PLACEHOLDERS.findall(text), f"{page.name}: placeholder text {PLACEHOLDERS.findall(text)}"
    assert "SPEC" not in text, f"{page.name} cites SPEC: link docs/contract.md or a theory page instead"


def test_spec_citations_in_docstrings_become_links():
    pytest.importorskip("griffe", reason="the docs extra is not installed (make docs)")
    hook = _hook("griffe_contract")
    assert hook.link_sections("(Kingma & Gao 2023, §4; SPEC §8)") == (
        "(Kingma & Gao 2023, §4; see [analytic test distributions][theory-analytic])"
    )
    assert hook.link_sections("terms (SPEC §4, §5)") == (
        "terms (see [the ELBO theorems][theory-integration-by-parts], [importance sampling][theory-importance-sampling])"
    )
    ranged = hook.link_sections("every formula of SPEC §1–§3")
    assert (
        ranged
        == "every formula of [noise schedules][theory-schedules], [weightings][theory-weightings], [losses][theory-vdm]"
    )
    # every anchor the links use is defined in a page
    anchors = set()
    for page in PAGES:
        text = page.read_text()
        anchors |= set(re.findall(r"\[\]\(\)\{#([\w-]+)\}", text)) | set(re.findall(r"\{#([\w-]+)\}\s*$", text, re.M))
    assert {anchor for _, anchor in hook.SECTIONS.values()} <= anchors


def test_cited_tests_link_to_their_definitions():
    """Each citation links to the chunk of the source page that starts at the test's `def`."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (make docs)")
    hook = _hook("source_links")
    path = "tests/test_docs.py"
    text = (ROOT / path).read_text()
    chunks = {name: (first, code) for name, first, code in hook._chunks(text)}
    first, code = chunks["test_cited_tests_exist"]
    assert text.splitlines()[first - 1].startswith("def test_cited_tests_exist")
    assert code.splitlines()[0].startswith("def test_cited_tests_exist")
    assert hook._anchors(text)["test_cited_tests_exist"] == "test_cited_tests_exist"
    # each chunk is the file's own lines from its first line on, so the numbering is right
    lines = text.splitlines()
    for start, chunk in chunks.values():
        assert chunk.splitlines() == lines[start - 1 : start - 1 + len(chunk.splitlines())]
    linked = hook._link_outside_code_blocks(
        "see `tests/test_docs.py::test_cited_tests_exist`\n```\n`tests/test_docs.py`\n```\n",
        lambda m: f"[{m.group(0)}](link)",
    )
    assert linked == "see [`tests/test_docs.py::test_cited_tests_exist`](link)\n```\n`tests/test_docs.py`\n```\n"


def test_api_pages_show_constructor_signatures():
    """eqx Modules get the signature Python checks calls against; private bases are hidden."""
    import inspect

    import eqx_impl

    griffe = pytest.importorskip("griffe", reason="the docs extra is not installed (make docs)")

    hook = _hook("griffe_signatures")
    package = griffe.load(
        "eqx_impl.schedules", search_paths=[str(ROOT)], extensions=griffe.load_extensions(hook.ConstructorSignatures)
    )
    cosine = package["Cosine"]
    params = [p for p in cosine.members["__init__"].parameters if p.name != "self"]
    expected = inspect.signature(eqx_impl.Cosine).parameters
    assert [p.name for p in params] == list(expected) == ["logsnr_min", "logsnr_max", "shift"]
    assert [p.default for p in params] == [repr(v.default) for v in expected.values()]
    assert all(str(p.annotation) == "float" for p in params)
    assert [str(b) for b in cosine.bases] == ["AbstractSchedule"]
