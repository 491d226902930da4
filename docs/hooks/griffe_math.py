"""Griffe extension for the API pages: math in docstrings survives Markdown's block parser.

Two habits of the packages' docstrings trip Python-Markdown before pymdownx.arithmatex sees
the math:

- display math directly under a line of text (`… are\n$$x = y$$\nso …`) stays inside the
  paragraph, where arithmatex only finds the inline `$…$` and leaves a stray `$` each side;
- inline math broken over lines, where a continuation line starting with `+` or `-` becomes
  a list item.

So every `$$…$$` gets blank lines around it (a block, rendered as display math), and the line
breaks inside an inline `$…$` become spaces. Only the rendered documentation changes; the
docstrings stay as written.
"""

from __future__ import annotations

import re

import griffe

_DISPLAY = re.compile(r"[ \t]*\$\$(.+?)\$\$[ \t]*", re.DOTALL)
_INLINE = re.compile(r"(?<![$\\])\$(?!\$)([^$]+?)(?<!\\)\$(?!\$)")


def separate_display_math(text: str) -> str:
    """`text` with every `$$…$$` surrounded by blank lines (and no more than one blank line in a row)."""
    spaced = _DISPLAY.sub(lambda m: "\n\n$$" + m.group(1).strip() + "$$\n\n", text)
    return re.sub(r"\n{3,}", "\n\n", spaced).strip("\n")


def join_inline_math(text: str) -> str:
    """`text` with the line breaks (and indentation) inside each inline `$…$` replaced by a space."""
    parts = re.split(r"(\$\$.+?\$\$)", text, flags=re.DOTALL)  # leave display math alone
    return "".join(
        part if part.startswith("$$") else _INLINE.sub(lambda m: "$" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "$", part)
        for part in parts
    )


class DisplayMath(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and "$" in obj.docstring.value:
            obj.docstring.value = separate_display_math(join_inline_math(obj.docstring.value))
