"""MkDocs hook: every test a page cites links to its source, shown in the site itself.

A page cites a test as inline code, `` `tests/test_x.py::test_name` `` (or a whole file,
`` `tests/test_x.py` ``). For each cited file this hook adds a page `source/tests/test_x.md`
holding the file as it is at build time, with numbered lines, cut before each top-level
definition, and turns each citation into a link to the test's definition (found by parsing
the file, so it cannot drift). The pages work offline, like the rest of the site; they are left out of
the navigation and the search index.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

_CITATION = re.compile(r"`(tests/test_\w+\.py)(?:::(test_\w+))?`")
_SOURCE_DIR = "source"


def _root(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _cited_files(files) -> list[str]:
    cited = set()
    for page in files.documentation_pages():
        if page.abs_src_path:
            cited |= {m.group(1) for m in _CITATION.finditer(Path(page.abs_src_path).read_text())}
    return sorted(cited)


def _page_for(path: str) -> str:
    return f"{_SOURCE_DIR}/{path[:-3]}.md"


def _chunks(text: str) -> list[tuple[str, int, str]]:
    """The file cut before each top-level definition: `(anchor, first line, code)` each.

    The anchor is the definition's name (`source` for the imports and helpers before the
    first one); a decorator belongs to its definition.
    """
    lines = text.splitlines()
    starts = [("source", 1)]
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            starts.append((node.name, first))
    chunks = []
    for k, (name, first) in enumerate(starts):
        end = starts[k + 1][1] - 1 if k + 1 < len(starts) else len(lines)
        code = "\n".join(lines[first - 1 : end]).rstrip()
        if code.strip():
            chunks.append((name, first, code))
    return chunks


def _source_page(path: str, text: str) -> str:
    fence = "`" * max(4, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    parts = [
        "---\nsearch:\n  exclude: true\n---\n",
        f"# `{path}`\n",
        f"The test file as it was when this site was built. Run it with "
        f"`.venv/bin/python -m pytest {path} -q`, or one test with `{path}::<name>`.\n",
    ]
    for name, first, code in _chunks(text):
        parts.append(f'[](){{#{name}}}\n\n{fence}python linenums="{first}"\n{code}\n{fence}\n')
    return "\n".join(parts)


def _anchors(text: str) -> dict[str, str]:
    """`{function name: anchor of the top-level definition that holds it}`."""
    anchors = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef):
                    anchors.setdefault(inner.name, node.name)
    return anchors


_ANCHORS: dict[str, dict[str, str]] = {}


def on_files(files, config, **kwargs):
    _ANCHORS.clear()
    root = _root(config)
    for path in _cited_files(files):
        source = root / path
        if not source.is_file():
            raise PluginError(f"the docs cite {path}, which does not exist: fix the citation")
        text = source.read_text()
        _ANCHORS[path] = _anchors(text)
        files.append(File.generated(config, _page_for(path), content=_source_page(path, text)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri.startswith(_SOURCE_DIR + "/"):
        return markdown
    here = posixpath.dirname(page.file.src_uri)

    def link(match: re.Match) -> str:
        path, test = match.group(1), match.group(2)
        target = posixpath.relpath(_page_for(path), here or ".")
        if test is None:
            return f"[{match.group(0)}]({target})"
        anchor = _ANCHORS.get(path, {}).get(test)
        if anchor is None:
            raise PluginError(f"{page.file.src_uri} cites {path}::{test}, which is not defined there")
        return f"[{match.group(0)}]({target}#{anchor})"

    return _link_outside_code_blocks(markdown, link)


def _link_outside_code_blocks(markdown: str, link) -> str:
    """Apply `link` to citations in the text, not inside fenced code blocks."""
    out, fence = [], None
    for line in markdown.splitlines(keepends=True):
        stripped = line.lstrip()
        opener = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is None and opener:
            fence = opener.group(1)
        elif fence is not None and stripped.startswith(fence) and not stripped[len(fence) :].strip():
            fence = None
        elif fence is None:
            line = _CITATION.sub(link, line)
        out.append(line)
    return "".join(out)
