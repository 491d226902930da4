r"""Kingma & Gao's claims, the tests that decide them, and the verdicts.

Every claim compares arm A with arm B on one metric (lower is better). The paper's numbers
are FID on ImageNet 64×64: the EDM column (Heun sampler) and the DDPM column (ancestral
sampler). Fixed before any run:

- FD is compared on the log scale (a ratio): a difference claim asks whether
  $\ln \mathrm{FD}_A < \ln \mathrm{FD}_B$; an "≈" claim is equivalence within a factor
  1.10 ($\delta = \ln 1.1$). The paper's own "≈" gaps are 0-1.4%.
- GMM NLLs (nats) are compared as they are; an "≈" claim is equivalence within
  $\delta = 0.05$ nats.
- Level $\alpha = 0.05$ family-wise over every p-value of the table (Holm): a Welch p for
  each difference claim, a Welch p and a TOST p for each "≈" claim.

Verdicts: a difference claim *reproduces* when its Welch test rejects in the paper's
direction, is *contradicted* when it rejects in the other; an "≈" claim *reproduces* when
TOST rejects (equivalent within δ) and *does not reproduce* when Welch rejects (they
differ); otherwise *inconclusive*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.stats import holm, t_interval, tost, welch

__all__ = ["ALPHA", "CLAIMS", "Claim", "decide"]

ALPHA = 0.05
FD_MARGIN = math.log(1.1)
NLL_MARGIN = 0.05


@dataclass(frozen=True)
class Claim:
    """One comparison: `a` vs `b` (arm labels) on `metric` of `data`; `kind` is `"better"`
    (A lower than B) or `"equivalent"`; `paper` the paper's (A, B) numbers or None."""

    text: str
    data: str
    metric: str
    a: str
    b: str
    kind: str
    paper: tuple[float, float] | None

    @property
    def log_scale(self) -> bool:
        return self.metric.startswith("fd")

    @property
    def margin(self) -> float:
        return FD_MARGIN if self.log_scale else NLL_MARGIN


def _sweep() -> list[Claim]:
    paper = {1: 1.75, 2: 1.68, 3: 1.73, 4: 1.80, 5: 1.94}
    return [
        Claim(
            f"bias sweep: b = 2 beats b = {b}",
            "digits",
            "fd_ancestral",
            "Sigmoid(2) / cosine",
            f"Sigmoid({b}) / cosine",
            "better",
            (paper[2], paper[b]),
        )
        for b in (1, 3, 4, 5)
    ]


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "Sigmoid(2) beats ε-pred + cosine",
        "digits",
        "fd_heun",
        "Sigmoid(2) / cosine",
        "EpsCosine / cosine",
        "better",
        (1.46, 1.55),
    ),
    *_sweep(),
    Claim(
        "adaptive ≈ cosine schedule (Sigmoid(2))",
        "digits",
        "fd_heun",
        "Sigmoid(2) / adaptive",
        "Sigmoid(2) / cosine",
        "equivalent",
        (1.44, 1.46),
    ),
    Claim(
        "adaptive ≈ cosine schedule (Sigmoid(2))",
        "digits",
        "fd_ancestral",
        "Sigmoid(2) / adaptive",
        "Sigmoid(2) / cosine",
        "equivalent",
        (1.70, 1.68),
    ),
    Claim(
        "Sigmoid(2) ≈ EDM-monotonic (adaptive)",
        "digits",
        "fd_heun",
        "Sigmoid(2) / adaptive",
        "EDM-monotonic / adaptive",
        "equivalent",
        (1.44, 1.44),
    ),
    Claim(
        "Sigmoid(2) beats ε-pred + cosine",
        "gmm",
        "sample_nll_heun",
        "Sigmoid(2) / cosine",
        "EpsCosine / cosine",
        "better",
        None,
    ),
    Claim(
        "adaptive ≈ cosine schedule (Sigmoid(2))",
        "gmm",
        "nelbo",
        "Sigmoid(2) / adaptive",
        "Sigmoid(2) / cosine",
        "equivalent",
        None,
    ),
    Claim(
        "adaptive ≈ cosine schedule (Sigmoid(2))",
        "gmm",
        "sample_nll_heun",
        "Sigmoid(2) / adaptive",
        "Sigmoid(2) / cosine",
        "equivalent",
        None,
    ),
    Claim(
        "Sigmoid(2) ≈ EDM-monotonic (adaptive)",
        "gmm",
        "sample_nll_heun",
        "Sigmoid(2) / adaptive",
        "EDM-monotonic / adaptive",
        "equivalent",
        None,
    ),
)


def _values(payload: dict, data: str, label: str, metric: str) -> list[float] | None:
    block = payload["datasets"].get(data)
    if block is None:
        return None
    for arm in block["arms"]:
        if arm["label"] == label and "failed" not in arm and len(arm["per_seed"]) >= 2:
            return [s[metric] for s in arm["per_seed"]]
    return None


def decide(payload: dict, claims=CLAIMS, alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Test every claim whose arms ran, Holm-correct all p-values together, give verdicts.

    **Returns:** one dict per claim: the claim, `a`/`b` t-intervals (raw metric), the test
    results (`welch`, `tost` on the log scale for FD), Holm-adjusted `p_welch`/`p_tost`, and
    `verdict` (`reproduces`, `contradicted`, `does not reproduce`, `inconclusive`, `not run`).
    """
    rows, pvals, where = [], [], []
    for claim in claims:
        a, b = (_values(payload, claim.data, arm, claim.metric) for arm in (claim.a, claim.b))
        row: dict[str, Any] = {"claim": claim}
        if a is None or b is None:
            row["verdict"] = "not run"
            rows.append(row)
            continue
        row["a"], row["b"] = t_interval(a), t_interval(b)
        ta, tb = (np.log(a), np.log(b)) if claim.log_scale else (a, b)
        row["welch"] = welch(ta, tb)
        pvals.append(row["welch"]["p"])
        where.append((len(rows), "p_welch"))
        if claim.kind == "equivalent":
            row["tost"] = tost(ta, tb, claim.margin)
            pvals.append(row["tost"]["p"])
            where.append((len(rows), "p_tost"))
        rows.append(row)
    for (i, key), p in zip(where, holm(pvals), strict=True):
        rows[i][key] = p
    for row in rows:
        if "welch" not in row:
            continue
        claim, diff = row["claim"], row["welch"]["diff"]
        differ = row["p_welch"] < alpha
        if claim.kind == "better":
            row["verdict"] = ("reproduces" if diff < 0 else "contradicted") if differ else "inconclusive"
        elif row["p_tost"] < alpha:
            row["verdict"] = "reproduces"
        else:
            row["verdict"] = "does not reproduce" if differ else "inconclusive"
    return rows
