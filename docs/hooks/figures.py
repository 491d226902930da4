"""MkDocs hook: a figure opens at full size when clicked.

Figures are drawn wide (several panels side by side) and shrink to the content column; a
figure that stands alone in its paragraph becomes a link to its own PNG, so a reader can
read its labels at full resolution. The page's Markdown stays a plain `![alt](file.png)`.
"""

from __future__ import annotations

import re

_FIGURE = re.compile(r'<p>\s*(<img\b[^>]*\bsrc="([^"]+)"[^>]*>)\s*</p>')


def on_page_content(html, page, config, files, **kwargs):
    return _FIGURE.sub(r'<p><a class="figure-full" href="\2" title="Open the figure at full size">\1</a></p>', html)
