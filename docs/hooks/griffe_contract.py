"""Griffe extension for the API pages: "SPEC §N" in a docstring becomes a link to the page.

The packages' docstrings cite the sections of the project's specification ("SPEC §4"),
which a reader of the site cannot open. On the API pages each section number becomes a
link to the page of the site that states or derives it: the contract page for the
conventions (§0) and the equivalence contract (§9), a theory page for the rest. The
targets are autorefs anchors (`[](){#theory-…}` in the theory pages, heading ids in
`docs/contract.md`). The docstrings stay as written.
"""

from __future__ import annotations

import re

import griffe

SECTIONS = {
    0: ("conventions", "contract-conventions"),
    1: ("noise schedules", "theory-schedules"),
    2: ("weightings", "theory-weightings"),
    3: ("losses", "theory-vdm"),
    4: ("the ELBO theorems", "theory-integration-by-parts"),
    5: ("importance sampling", "theory-importance-sampling"),
    6: ("the learned schedule", "theory-learned-schedule"),
    7: ("EDM and samplers", "theory-edm"),
    8: ("analytic test distributions", "theory-analytic"),
    9: ("the equivalence contract", "contract-equivalence"),
}
_CITATION = re.compile(r"SPEC\s+(§\d+(?:\s*[–-]\s*§\d+)?(?:\s*,\s*§\d+(?:\s*[–-]\s*§\d+)?)*)")


def _numbers(sections: str) -> list[int]:
    numbers = []
    for part in re.split(r"\s*,\s*", sections):
        ends = [int(n) for n in re.findall(r"\d+", part)]
        numbers += list(range(ends[0], ends[-1] + 1))
    return numbers


def link_sections(text: str) -> str:
    """`text` with every "SPEC §N[, §M…]" replaced by "see [title][anchor], …"."""

    def replace(match: re.Match) -> str:
        links = [f"[{SECTIONS[n][0]}][{SECTIONS[n][1]}]" for n in _numbers(match.group(1)) if n in SECTIONS]
        if not links:
            return match.group(0)
        after_of = match.string[: match.start()].endswith("of ")
        return ("" if after_of else "see ") + ", ".join(links)

    return _CITATION.sub(replace, text)


class ContractLinks(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and "SPEC" in obj.docstring.value:
            obj.docstring.value = link_sections(obj.docstring.value)
