r"""The study's statistics: t-intervals, Welch tests, TOST equivalence tests, Holm's correction.

Seeds are independent replicates, so every number is a mean with a Student-t interval,
$\bar x \pm t_{n-1,\,1-\alpha/2}\, s/\sqrt n$. Two arms are compared with Welch's test
(unequal variances):

$$t = \frac{\bar a - \bar b}{\sqrt{s_a^2/n_a + s_b^2/n_b}}, \qquad
\nu = \frac{(s_a^2/n_a + s_b^2/n_b)^2}{\frac{(s_a^2/n_a)^2}{n_a - 1} + \frac{(s_b^2/n_b)^2}{n_b - 1}}.$$

An "≈" claim is decided by two one-sided Welch tests (TOST) against a margin $\delta$ fixed
before the data are seen: $H_0: |\mu_a - \mu_b| \ge \delta$ is rejected at level $\alpha$
when both $\mu_a - \mu_b > -\delta$ and $\mu_a - \mu_b < \delta$ are significant, i.e.
$p_{\text{TOST}} = \max(p_{\text{lower}}, p_{\text{upper}})$. Holm's step-down procedure
controls the family-wise error over all claims: the $k$-th smallest of $m$ p-values is
multiplied by $m - k + 1$, then made monotone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["holm", "t_interval", "tost", "welch"]


def _values(name: str, values: Sequence[float], minimum: int = 2) -> np.ndarray:
    v = np.asarray([float(x) for x in values], np.float64)
    if v.ndim != 1 or len(v) < minimum:
        raise ValueError(f"{name} needs at least {minimum} values (one per seed), got {len(v)}; run more seeds.")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} has non-finite values {v.tolist()}; drop or rerun the failed seeds.")
    return v


def t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float | list[float]]:
    r"""Mean and the two-sided Student-t interval $\bar x \pm t_{n-1,(1+\text{level})/2}\,s/\sqrt n$.

    **Returns:** `{"mean", "sd", "n", "lo", "hi", "half", "values"}`.
    """
    v = _values("t_interval", values)
    n, mean, sd = len(v), float(v.mean()), float(v.std(ddof=1))
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "lo": mean - half, "hi": mean + half, "half": half, "values": v.tolist()}


def _welch_parts(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        raise ValueError("both arms have zero variance; a t-test is undefined (are the seeds really varied?).")
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(a.mean() - b.mean()), se, df


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Welch's two-sided test of $\\mu_a = \\mu_b$, with the interval of the difference.

    **Returns:** `{"diff", "se", "df", "t", "p", "lo", "hi"}` (diff = mean a − mean b).
    """
    a, b = _values("welch: a", a), _values("welch: b", b)
    diff, se, df = _welch_parts(a, b)
    t = diff / se
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return {
        "diff": diff,
        "se": se,
        "df": df,
        "t": t,
        "p": float(2 * sps.t.sf(abs(t), df)),
        "lo": diff - half,
        "hi": diff + half,
    }


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> dict[str, float]:
    r"""Equivalence test of $|\mu_a - \mu_b| < \delta$ (`margin`) by two one-sided Welch tests.

    **Returns:** `{"diff", "se", "df", "p_lower", "p_upper", "p", "margin"}`; `p` is
    $\max(p_{\text{lower}}, p_{\text{upper}})$, small when the arms are equivalent.
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin!r}.")
    a, b = _values("tost: a", a), _values("tost: b", b)
    diff, se, df = _welch_parts(a, b)
    p_lower = float(sps.t.sf((diff + margin) / se, df))  # H0: diff <= -margin
    p_upper = float(sps.t.cdf((diff - margin) / se, df))  # H0: diff >= +margin
    return {
        "diff": diff,
        "se": se,
        "df": df,
        "p_lower": p_lower,
        "p_upper": p_upper,
        "p": max(p_lower, p_upper),
        "margin": float(margin),
    }


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control); reject where
    adjusted p < α.

    **Returns:** the adjusted p-values in the input order.
    """
    p = np.asarray([float(x) for x in pvalues], np.float64)
    if p.size and (np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}.")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
