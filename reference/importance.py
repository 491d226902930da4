r"""Importance sampling of log-SNR and the adaptive noise schedule (SPEC §5).

The weighted loss $\mathcal L_w = \tfrac12\int_{\lambda_{\min}}^{\lambda_{\max}} w\,m_1\,d\lambda$,
$m_1(\lambda) = \mathbb E\,\ell(\lambda)$, is estimated by
$\hat{\mathcal L} = \tfrac12\,w(\lambda)\,\ell(\lambda)/p(\lambda)$ with $\lambda \sim p$: the noise
schedule is only the proposal $p$. It changes the variance

$$\operatorname{Var}_p \hat{\mathcal L} = \tfrac14\int \frac{w^2 m_2}{p}\,d\lambda - \mathcal L_w^2,
  \qquad m_2(\lambda) = \mathbb E\,\ell(\lambda)^2,$$

never the mean. By Cauchy–Schwarz it is smallest for $p^* \propto w\sqrt{m_2}$, where
$\operatorname{Var}_{\min} = \tfrac14\big(\int w\sqrt{m_2}\,d\lambda\big)^2 - \mathcal L_w^2$.
`Adaptive` learns a piecewise-constant approximation of $p^*$ during training
(Kingma & Gao 2023, appendix on the adaptive noise schedule).

`weighting` is an `AbstractWeighting`; it and the callables `density`, `m1`, `m2` take
float64 log-SNR arrays and act elementwise. Integrals use `scipy.integrate.quad` at relative tolerance $10^{-12}$, with
break points at the weighting's `kinks` and at any extra `points` (e.g. `Adaptive.edges`
for a piecewise-constant density).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import integrate

import _checks
from reference.weightings import AbstractWeighting

_EPSREL = 1e-12


def _quad(f: Callable, lo: float, hi: float, points: Iterable[float]) -> float:
    """$\\int_{lo}^{hi} f$ by adaptive Gauss–Kronrod, split at the inner break points."""
    inner = sorted({float(p) for p in points if lo < float(p) < hi})
    value, _ = integrate.quad(
        lambda x: float(f(np.float64(x))),
        lo,
        hi,
        points=inner or None,
        epsabs=0.0,
        epsrel=_EPSREL,
        limit=max(200, 4 * len(inner) + 50),
    )
    return value


def _break_points(weighting: AbstractWeighting, points) -> tuple[float, ...]:
    """The weighting's kinks and the extra `points`: the quadrature's break points."""
    if not isinstance(weighting, AbstractWeighting):
        raise TypeError(
            f"weighting must be an AbstractWeighting (e.g. reference.Sigmoid(2.0)), got "
            f"{type(weighting).__name__}; to use a function w(λ), subclass AbstractWeighting "
            "with `__call__` and `kinks` (the log-SNRs where dw/dλ jumps, () if none)."
        )
    return tuple(weighting.kinks) + tuple(np.ravel(np.asarray(points, np.float64)))


def estimator_mean(weighting: AbstractWeighting, m1, logsnr_min: float, logsnr_max: float, *, points=()) -> float:
    r"""The weighted loss $\mathcal L_w = \tfrac12\int w\,m_1\,d\lambda$ over the interval.

    It is the mean of $\hat{\mathcal L} = \tfrac12 w\ell/p$ under every proposal $p$.

    **Returns:** $\mathcal L_w$ as a Python float.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    return 0.5 * _quad(lambda x: weighting(x) * m1(x), lo, hi, _break_points(weighting, points))


def estimator_variance(
    weighting: AbstractWeighting, density, m1, m2, logsnr_min: float, logsnr_max: float, *, points=()
) -> float:
    r"""Variance of $\hat{\mathcal L} = \tfrac12\,w\,\ell/p$, $\lambda \sim p$ = `density`.

    $$\operatorname{Var} = \tfrac14\int_{\lambda_{\min}}^{\lambda_{\max}}
      \frac{w^2 m_2}{p}\,d\lambda - \mathcal L_w^2,
      \qquad \mathcal L_w = \tfrac12\int w\,m_1\,d\lambda.$$
    `density` must be positive wherever $w^2 m_2 > 0$ (else the variance is infinite) and
    integrate to 1 on the interval; pass its discontinuities as `points`.

    **Returns:** the variance as a Python float.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    pts = _break_points(weighting, points)
    second = 0.25 * _quad(lambda x: weighting(x) ** 2 * m2(x) / density(x), lo, hi, pts)
    return second - estimator_mean(weighting, m1, lo, hi, points=points) ** 2


class OptimalProposal:
    r"""The variance-optimal proposal $p^*(\lambda) = w(\lambda)\sqrt{m_2(\lambda)}/Z$.

    Supported on $[\lambda_{\min}, \lambda_{\max}]$ (0 outside).

    $Z = \int w\sqrt{m_2}\,d\lambda$ is stored as `normalizer`.
    """

    def __init__(self, weighting: AbstractWeighting, m2, logsnr_min: float, logsnr_max: float, normalizer: float):
        self.weighting, self.m2 = weighting, m2
        self.logsnr_min, self.logsnr_max = logsnr_min, logsnr_max
        self.normalizer = normalizer

    @property
    def kinks(self) -> tuple[float, ...]:
        """The weighting's kinks (where $p^*$'s derivative may jump)."""
        return self.weighting.kinks

    def __call__(self, logsnr):
        logsnr = np.asarray(logsnr, dtype=np.float64)
        inside = (logsnr >= self.logsnr_min) & (logsnr <= self.logsnr_max)
        value = self.weighting(logsnr) * np.sqrt(self.m2(logsnr)) / self.normalizer
        return np.where(inside, value, 0.0)


def optimal_proposal(
    weighting: AbstractWeighting, m2, logsnr_min: float, logsnr_max: float, *, points=()
) -> OptimalProposal:
    r"""The proposal minimising `estimator_variance`: $p^* \propto w\sqrt{m_2}$ on the interval.

    **Returns:** an `OptimalProposal`, a callable density of log-SNR.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    z = _quad(lambda x: weighting(x) * np.sqrt(m2(x)), lo, hi, _break_points(weighting, points))
    if not (np.isfinite(z) and z > 0):
        raise ValueError(
            f"int w*sqrt(m2) over [{lo}, {hi}] is {z!r}; the optimal proposal needs it "
            "finite and > 0 "
            "(check that the weighting and m2 are non-negative and not identically zero)."
        )
    return OptimalProposal(weighting, m2, lo, hi, z)


def optimal_variance(weighting: AbstractWeighting, m1, m2, logsnr_min: float, logsnr_max: float, *, points=()) -> float:
    r"""The smallest variance over proposals.

    $$\operatorname{Var}_{\min} = \tfrac14\Big(\int w\sqrt{m_2}\,d\lambda\Big)^2 - \mathcal L_w^2.$$

    **Returns:** $\operatorname{Var}_{\min}$ as a Python float.
    """
    lo, hi = _checks.logsnr_range(logsnr_min, logsnr_max)
    z = _quad(lambda x: weighting(x) * np.sqrt(m2(x)), lo, hi, _break_points(weighting, points))
    return 0.25 * z**2 - estimator_mean(weighting, m1, lo, hi, points=points) ** 2


# --- the adaptive schedule ------------------------------------------------------------------


class AdaptiveState(NamedTuple):
    """State of `Adaptive`: per bin the (biased) EMA and the number of batches that updated it."""

    ema: np.ndarray
    count: np.ndarray


class Adaptive:
    r"""Kingma & Gao's adaptive noise schedule: a piecewise-constant proposal learned from losses.

    `n_bins` equal-width bins on $[\lambda_{\min}, \lambda_{\max}]$. Each batch updates, in every
    bin it hits, an EMA $e_k \leftarrow \beta e_k + (1-\beta)\,\bar y_k$ of the batch mean
    $\bar y_k$ of
    $y = w(\lambda)\ell$ (`target="mean"`) or $y = (w\ell)^2$ (`target="rms"`). With the bias
    correction $c_k = e_k/(1-\beta^{n_k})$ ($n_k$ updates; bins never updated take the mean of the
    updated $c_k$, all equal when none is), $q_k = c_k$ or $\sqrt{c_k}$ and the bin masses are

    $$\pi_k = (1-\alpha)\,\frac{q_k}{\sum_j q_j} + \frac{\alpha}{n},
      \qquad \alpha = \texttt{uniform\_weight},$$

    so $p(\lambda) = \pi_k / \Delta$ on bin $k$ (width $\Delta$). Since
    $\mathbb E[w\ell \mid \text{bin}]$ is the bin average of $w m_1$ whatever the proposal, "rms"
    approaches $p^* \propto w\sqrt{m_2}$ and "mean" approaches $\propto w m_1$. Pure functions of an
    `AdaptiveState` (optax style).
    """

    def __init__(
        self,
        logsnr_min: float,
        logsnr_max: float,
        n_bins: int = 100,
        decay: float = 0.999,
        target: str = "mean",
        uniform_weight: float = 0.01,
    ):
        (
            self.logsnr_min,
            self.logsnr_max,
            self.n_bins,
            self.decay,
            self.target,
            self.uniform_weight,
        ) = _checks.adaptive(logsnr_min, logsnr_max, n_bins, decay, target, uniform_weight)
        self.width = (self.logsnr_max - self.logsnr_min) / self.n_bins
        self.edges = self.logsnr_min + self.width * np.arange(self.n_bins + 1, dtype=np.float64)
        self.edges[-1] = self.logsnr_max

    def init(self) -> AdaptiveState:
        """**Returns:** the empty state (no bin updated: the uniform proposal)."""
        return AdaptiveState(np.zeros(self.n_bins), np.zeros(self.n_bins, dtype=np.int64))

    def bin_index(self, logsnr) -> NDArray[np.int64] | np.int64:
        r"""The bin of each log-SNR, $\lambda_{\max}$ in the last bin.

        $$k = \big\lfloor n(\lambda - \lambda_{\min})/(\lambda_{\max}-\lambda_{\min}) \big\rfloor.$$

        **Returns:** integer array like `logsnr`.
        """
        scaled = (np.asarray(logsnr, np.float64) - self.logsnr_min) * (
            self.n_bins / (self.logsnr_max - self.logsnr_min)
        )
        return np.clip(np.floor(scaled), 0, self.n_bins - 1).astype(np.int64)

    def bin_masses(self, state: AdaptiveState) -> np.ndarray:
        r"""The bin probabilities $\pi_k$ defined in the class docstring.

        Computed directly, not as CDF differences, so small masses keep full relative precision.

        **Returns:** `(n_bins,)` positive array summing to 1.
        """
        ema, count = np.asarray(state.ema, np.float64), np.asarray(state.count)
        updated = count > 0
        # 1 - decay^n without cancellation for decay close to 1; decay = 0 means no memory.
        log_decay = np.log(self.decay) if self.decay > 0 else -np.inf
        denom = np.where(updated, -np.expm1(np.where(updated, count, 1) * log_decay), 1.0)
        corrected = np.where(updated, ema / denom, 0.0)
        fill = corrected.sum() / updated.sum() if updated.any() else 1.0
        c = np.where(updated, corrected, fill)
        q = np.sqrt(c) if self.target == "rms" else c
        total = q.sum()
        q = q / total if total > 0 else np.full(self.n_bins, 1.0 / self.n_bins)
        pi = (1.0 - self.uniform_weight) * q + self.uniform_weight / self.n_bins
        return pi / pi.sum()

    def cdf_knots(self, state: AdaptiveState) -> np.ndarray:
        r"""The CDF at the bin edges, $F_k = \sum_{j<k}\pi_j$, normalised so $F_n = 1$ exactly.

        **Returns:** `(n_bins + 1,)` increasing array from 0 to 1.
        """
        cdf = np.concatenate([[0.0], np.cumsum(self.bin_masses(state))])
        return cdf / cdf[-1]

    def density(self, state: AdaptiveState, logsnr) -> np.ndarray:
        """$p(\\lambda) = \\pi_k/\\Delta$ on bin $k$; 0 outside the range.

        **Returns:** array like `logsnr`.
        """
        logsnr = np.asarray(logsnr, np.float64)
        masses = self.bin_masses(state)
        inside = (logsnr >= self.logsnr_min) & (logsnr <= self.logsnr_max)
        return np.where(inside, masses[self.bin_index(logsnr)] / self.width, 0.0)

    def sample(self, state: AdaptiveState, u) -> tuple[np.ndarray, np.ndarray]:
        r"""Inverse CDF: the $\lambda$ with $F(\lambda) = u$, increasing in $u \in [0, 1)$.

        Bin $k$ holds $u \in [F_k, F_{k+1})$, $F_k = \sum_{j<k}\pi_j$; inside it
        $\lambda = \lambda_{\min} + \Delta\,(k + (u - F_k)/\pi_k)$. Stratified
        $u_i = (u_0 + i/B) \bmod 1$ therefore gives one sample per $1/B$ of probability mass.

        **Returns:** `(logsnr, density)`, arrays like `u`; `density` is $p(\lambda)$.
        """
        u = np.asarray(u, np.float64)
        if not np.all((u >= 0.0) & (u < 1.0)):
            raise ValueError("u must lie in [0, 1); draw it as uniform(0, 1) or (u0 + i/B) % 1.")
        masses, cdf = self.bin_masses(state), self.cdf_knots(state)
        k = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, self.n_bins - 1)
        # F_{k+1} - F_k equals π_k only to rounding: keep λ inside bin k, where p = π_k/Δ.
        frac = np.clip((u - cdf[k]) / masses[k], 0.0, 1.0)
        logsnr = self.logsnr_min + (k + frac) * self.width
        return logsnr, masses[k] / self.width

    def update(self, state: AdaptiveState, logsnr, values) -> AdaptiveState:
        r"""One EMA step per bin hit by the batch, with the batch mean of $y$ in that bin.

        `values` are the per-sample $w(\lambda)\,\ell$ (computed by the caller), shaped like
        `logsnr`.

        **Returns:** the new `AdaptiveState`.
        """
        logsnr = np.asarray(logsnr, np.float64)
        values = np.asarray(values, np.float64)
        _checks.same_shape("logsnr", logsnr, "values", values)
        if not np.all((logsnr >= self.logsnr_min) & (logsnr <= self.logsnr_max)):
            raise ValueError(
                f"logsnr must lie in [{self.logsnr_min}, {self.logsnr_max}]; pass the log-SNRs drawn by sample()."
            )
        if not np.all(np.isfinite(values)):
            raise ValueError("values must be finite; check the loss for NaN/inf before updating.")
        if self.target == "mean" and np.any(values < 0):
            raise ValueError("values must be >= 0 for target='mean'; pass w(logsnr) * loss.")
        k = self.bin_index(logsnr).ravel()
        y = values.ravel() ** 2 if self.target == "rms" else values.ravel()
        sums = np.bincount(k, weights=y, minlength=self.n_bins)
        hits = np.bincount(k, minlength=self.n_bins)
        batch_mean = sums / np.maximum(hits, 1)
        ema = np.where(hits > 0, self.decay * state.ema + (1.0 - self.decay) * batch_mean, state.ema)
        return AdaptiveState(ema, state.count + (hits > 0))
