"""Importance sampling and the adaptive schedule (SPEC §5), reference side.

The model problem: Gaussian data $x \\sim N(0, s^2 I_d)$ with the Bayes-optimal denoiser gives
$\\ell(\\lambda) = v\\,\\chi^2_d$, $v = \\mathrm{sigmoid}(\\lambda + \\ln s^2)$, so $m_1 = d v$,
$m_2 = v^2(d^2 + 2d)$ and $\\mathrm{Var}_{\\min} = \\tfrac12 d(\\int w v)^2$. Independent
computations use composite Simpson on a fine grid (not scipy's quad, which the package uses)
and Monte Carlo with explicit confidence bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import reference as R
from reference.importance import (
    Adaptive,
    estimator_mean,
    estimator_variance,
    optimal_proposal,
    optimal_variance,
)

D, S2 = 4, 0.5
LO, HI = -10.0, 10.0
W = R.Sigmoid(2.0)


def v(logsnr):
    return special.expit(np.asarray(logsnr, np.float64) + math.log(S2))


def m1(logsnr):
    return D * v(logsnr)


def m2(logsnr):
    return v(logsnr) ** 2 * (D * D + 2 * D)


def simpson(f, lo=LO, hi=HI, n=200_001):
    """Composite Simpson on n points: error O(h^4) ~ 1e-16 relative for these smooth integrands."""
    x = np.linspace(lo, hi, n)
    return integrate.simpson(f(x), x=x)


# --- the analytic variance ---------------------------------------------------------------------


def test_spec_example_values():
    """SPEC §5: d=4, s²=0.5, Sigmoid(2), Cosine(-10, 10): Var = 15.78, Var_min = 6.42."""
    cosine = R.Cosine(LO, HI)
    var = estimator_variance(W, cosine.density, m1, m2, LO, HI)
    var_min = optimal_variance(W, m1, m2, LO, HI)
    # Independent: Simpson of the defining integrals, and the Gaussian closed form for Var_min.
    mean = 0.5 * simpson(lambda x: W(x) * m1(x))
    var_simpson = 0.25 * simpson(lambda x: W(x) ** 2 * m2(x) / cosine.density(x)) - mean**2
    var_min_closed = 0.5 * D * simpson(lambda x: W(x) * v(x)) ** 2
    assert estimator_mean(W, m1, LO, HI) == pytest.approx(mean, rel=1e-10)
    assert var == pytest.approx(var_simpson, rel=1e-10)
    assert var_min == pytest.approx(var_min_closed, rel=1e-10)
    assert round(var, 2) == 15.78
    assert round(var_min, 2) == 6.42


def test_variance_matches_monte_carlo():
    """Sample λ from Cosine via t ~ U(0,1) and ℓ = v χ²_d; the analytic mean and variance lie
    within 5 standard errors. SE of the sample variance: sqrt((μ₄ - s⁴)/N)."""
    cosine = R.Cosine(LO, HI)
    rng = np.random.default_rng(20230301)
    n = 1_000_000
    lam = cosine.logsnr(rng.uniform(size=n))
    ell = v(lam) * rng.chisquare(D, size=n)
    estimate = 0.5 * W(lam) / cosine.density(lam) * ell
    mean, var = estimate.mean(), estimate.var(ddof=1)
    centred = estimate - mean
    se_var = math.sqrt((np.mean(centred**4) - var**2) / n)
    se_mean = math.sqrt(var / n)
    assert se_var < 0.02 * var  # the test can tell a 10% error apart
    assert abs(mean - estimator_mean(W, m1, LO, HI)) < 5 * se_mean
    assert abs(var - estimator_variance(W, cosine.density, m1, m2, LO, HI)) < 5 * se_var


def test_optimal_proposal_is_normalised_and_proportional():
    p_star = optimal_proposal(W, m2, LO, HI)
    assert simpson(p_star) == pytest.approx(1.0, rel=1e-10)
    x = np.linspace(LO, HI, 101)
    ratio = p_star(x) / (W(x) * np.sqrt(m2(x)))
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-13)
    assert p_star(np.array([LO - 1.0, HI + 1.0])).tolist() == [0.0, 0.0]


def test_optimal_proposal_beats_other_schedules():
    """Var(p*) = Var_min = ½d(∫wv)² and every schedule on the same range does worse."""
    var_min = 0.5 * D * simpson(lambda x: W(x) * v(x)) ** 2
    var_star = estimator_variance(W, optimal_proposal(W, m2, LO, HI), m1, m2, LO, HI)
    assert var_star == pytest.approx(var_min, rel=1e-9)
    for schedule in (R.Cosine(LO, HI), R.LinearLogSNR(LO, HI), R.EDMLogNormal(-1.2, 1.2, LO, HI)):
        var = estimator_variance(W, schedule.density, m1, m2, LO, HI)
        assert var > 1.1 * var_min, type(schedule).__name__


def test_estimator_variance_with_kinked_weighting():
    """MinSNR's kink at ln γ is a quadrature break point; compare with Simpson split there."""
    w = R.MinSNR(5.0)
    density = R.LinearLogSNR(LO, HI).density
    kink = math.log(5.0)

    def split(f):
        return simpson(f, LO, kink) + simpson(f, kink, HI)

    expected = 0.25 * split(lambda x: w(x) ** 2 * m2(x) / density(x)) - (0.5 * split(lambda x: w(x) * m1(x))) ** 2
    assert estimator_variance(w, density, m1, m2, LO, HI) == pytest.approx(expected, rel=1e-10)


# --- the adaptive schedule: mechanics -----------------------------------------------------------


def _trained_state(adaptive, seed=0, steps=20, batch=64):
    """A state with uneven EMAs and some bins never updated."""
    rng = np.random.default_rng(seed)
    state = adaptive.init()
    for _ in range(steps):
        lam = rng.uniform(adaptive.logsnr_min, 0.5 * (adaptive.logsnr_min + adaptive.logsnr_max), batch)
        state = adaptive.update(state, lam, rng.exponential(size=batch) * np.exp(-0.3 * lam))
    return state


def test_update_by_hand():
    """One batch: per-bin means, one EMA step per bin, bias correction, fill of empty bins."""
    a = Adaptive(-10.0, 10.0, n_bins=5, decay=0.9, target="mean", uniform_weight=0.1)
    state = a.update(a.init(), [-9.0, -9.5, 1.0, 9.99, 10.0], [1.0, 3.0, 4.0, 2.0, 6.0])
    np.testing.assert_allclose(state.ema, [0.1 * 2.0, 0.0, 0.1 * 4.0, 0.0, 0.1 * 4.0], rtol=1e-15)
    assert state.count.tolist() == [1, 0, 1, 0, 1]
    # Corrected c = (2, ·, 4, ·, 4); empty bins take their mean 10/3.
    c = np.array([2.0, 10 / 3, 4.0, 10 / 3, 4.0])
    np.testing.assert_allclose(a.bin_masses(state), 0.9 * c / c.sum() + 0.1 / 5, rtol=1e-14)
    # Second batch hits bin 0 only: its corrected value is the 2-term weighted mean.
    state = a.update(state, [-9.0], [5.0])
    assert state.count.tolist() == [2, 0, 1, 0, 1]
    assert state.ema[0] / (1 - 0.9**2) == pytest.approx((0.9 * 0.1 * 2 + 0.1 * 5) / 0.19, rel=1e-14)


def test_rms_target_tracks_square_root_of_mean_square():
    a = Adaptive(0.0, 2.0, n_bins=2, decay=0.5, target="rms", uniform_weight=1e-9)
    state = a.update(a.init(), [0.5, 0.5, 1.5], [3.0, 4.0, 1.0])
    # bin 0: mean of squares 12.5, bin 1: 1 -> masses ∝ (√12.5, 1)
    expected = np.array([math.sqrt(12.5), 1.0]) / (math.sqrt(12.5) + 1.0)
    np.testing.assert_allclose(a.bin_masses(state), expected, rtol=1e-8)


def test_init_is_uniform():
    a = Adaptive(-3.0, 5.0, n_bins=8)
    lam, density = a.sample(a.init(), np.linspace(0.0, 1.0, 16, endpoint=False))
    np.testing.assert_allclose(lam, np.linspace(-3.0, 5.0, 17)[:-1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(density, 1.0 / 8.0, rtol=1e-14)


def _piecewise_cdf(adaptive, state, logsnr):
    """CDF by integrating `density` exactly (it is constant on each bin): cumulative bin masses."""
    edges = adaptive.edges
    centres = 0.5 * (edges[1:] + edges[:-1])
    masses = adaptive.density(state, centres) * np.diff(edges)
    knots = np.concatenate([[0.0], np.cumsum(masses)])
    return np.interp(logsnr, edges, knots)


def test_density_integrates_to_one():
    a = Adaptive(-10.0, 10.0, n_bins=37)
    state = _trained_state(a)
    total = sum(
        integrate.quad(lambda x: float(a.density(state, x)), lo, hi, epsabs=0, epsrel=1e-13)[0]
        for lo, hi in zip(a.edges[:-1], a.edges[1:], strict=True)
    )
    assert total == pytest.approx(1.0, rel=1e-12)
    masses = a.bin_masses(state)
    assert masses.min() >= 0.99 * a.uniform_weight / a.n_bins  # every bin keeps support


def test_sample_is_inverse_cdf():
    """sample(F(λ)) = λ on a grid, and the returned density is p(λ)."""
    a = Adaptive(-10.0, 10.0, n_bins=37, target="rms")
    state = _trained_state(a)
    lam = np.linspace(-9.99, 9.99, 301)
    back, density = a.sample(state, _piecewise_cdf(a, state, lam))
    np.testing.assert_allclose(back, lam, rtol=0, atol=1e-10)
    np.testing.assert_allclose(density, a.density(state, lam), rtol=1e-12)


def test_sample_ks():
    """Kolmogorov–Smirnov of sample(U) against the piecewise-linear CDF; fixed seed, p > 0.01."""
    a = Adaptive(-10.0, 10.0, n_bins=37)
    state = _trained_state(a)
    lam, _ = a.sample(state, np.random.default_rng(7).uniform(size=20_000))
    result = stats.kstest(lam, lambda x: _piecewise_cdf(a, state, x))
    assert result.pvalue > 0.01
    # ... and it would reject the uniform proposal (the test has power).
    assert stats.kstest(lam, stats.uniform(-10.0, 20.0).cdf).pvalue < 1e-6


def test_stratified_sampling_one_per_stratum():
    a = Adaptive(-10.0, 10.0, n_bins=37)
    state = _trained_state(a)
    batch = 256
    u = (0.3141 + np.arange(batch) / batch) % 1.0
    lam, _ = a.sample(state, u)
    strata = np.floor(_piecewise_cdf(a, state, lam) * batch + 1e-9).astype(int)
    assert sorted(strata.tolist()) == list(range(batch))


# --- the adaptive schedule: convergence ---------------------------------------------------------


def _simulate(adaptive, loss_sampler, steps, batch=128, seed=0):
    """Training without a network: stratified λ from the proposal, exact losses, EMA updates."""
    rng = np.random.default_rng(seed)
    state = adaptive.init()
    for _ in range(steps):
        u = (rng.uniform() + np.arange(batch) / batch) % 1.0
        lam, _ = adaptive.sample(state, u)
        state = adaptive.update(state, lam, W(lam) * loss_sampler(lam, rng))
    return state


def test_adaptive_rms_converges_to_optimal_variance():
    """Gaussian data: after 3000 steps of 128 the proposal's analytic variance is within 10% of
    Var_min (measured ≈ 1.01: the 1% uniform floor plus EMA noise)."""
    a = Adaptive(LO, HI, n_bins=100, decay=0.995, target="rms")
    state = _simulate(a, lambda lam, rng: v(lam) * rng.chisquare(D, size=lam.shape), steps=3000)
    var = estimator_variance(W, lambda x: a.density(state, x), m1, m2, LO, HI, points=a.edges)
    var_min = optimal_variance(W, m1, m2, LO, HI)
    uniform = estimator_variance(W, R.LinearLogSNR(LO, HI).density, m1, m2, LO, HI)
    assert var < 1.10 * var_min
    assert uniform > 1.5 * var_min  # the starting point was far from optimal


def _gamma_loss_problem():
    """ℓ = a(λ)·Gamma(k, 1/k): m₁ = a, m₂ = a²(1 + 1/k); k varies with λ so that w·m₁ and
    w·√m₂ differ in shape (total variation 0.032 between their bin masses)."""
    amp = special.expit
    shape = lambda x: 0.5 + 4.0 * special.expit(x)

    def sampler(lam, rng):
        k = shape(lam)
        return amp(lam) * rng.gamma(k, 1.0 / k)

    return amp, lambda x: amp(x) ** 2 * (1.0 + 1.0 / shape(x)), sampler


@pytest.mark.parametrize("target", ["mean", "rms"])
def test_adaptive_targets_converge_to_their_bin_masses(target):
    """'mean' → masses ∝ ∫_bin w·m₁, 'rms' → ∝ (∫_bin w²m₂)^½. Seeds 0–2 give total variation
    ≈ 0.004 to the own target and ≈ 0.032 to the other; thresholds 0.012 and 0.02."""
    m1_, m2_, sampler = _gamma_loss_problem()
    a = Adaptive(LO, HI, n_bins=100, decay=0.999, target=target)
    state = _simulate(a, sampler, steps=3000)
    e = a.edges
    mean_masses = np.array([integrate.quad(lambda x: W(x) * m1_(x), e[k], e[k + 1])[0] for k in range(a.n_bins)])
    rms_masses = np.sqrt([integrate.quad(lambda x: W(x) ** 2 * m2_(x), e[k], e[k + 1])[0] for k in range(a.n_bins)])
    own, other = (mean_masses, rms_masses) if target == "mean" else (rms_masses, mean_masses)
    learned = (a.bin_masses(state) - a.uniform_weight / a.n_bins) / (1.0 - a.uniform_weight)
    assert 0.5 * np.abs(learned - own / own.sum()).sum() < 0.012
    assert 0.5 * np.abs(learned - other / other.sum()).sum() > 0.02


# --- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_bins=0),
        dict(n_bins=2.5),
        dict(decay=1.0),
        dict(decay=-0.1),
        dict(decay=float("nan")),
        dict(uniform_weight=0.0),
        dict(uniform_weight=1.5),
        dict(target="median"),
        dict(logsnr_min=5.0, logsnr_max=-5.0),
        dict(logsnr_min=1.0, logsnr_max=1.0),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_adaptive_rejects_bad_hyperparameters(kwargs):
    args = dict(logsnr_min=-10.0, logsnr_max=10.0) | kwargs
    # TypeError: n_bins=2.5 breaks the `int` annotation, which the tests' run-time type check
    # (tests/conftest.py) reports before Adaptive's own ValueError.
    with pytest.raises((ValueError, TypeError)):
        Adaptive(**args)


@pytest.mark.parametrize("u", [1.0, -0.1, float("nan")])
def test_sample_rejects_u_outside_unit_interval(u):
    a = Adaptive(-10.0, 10.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        a.sample(a.init(), np.array([0.5, u]))


def test_update_rejects_logsnr_outside_range():
    a = Adaptive(-10.0, 10.0)
    with pytest.raises(ValueError, match="must lie in"):
        a.update(a.init(), [0.0, 10.5], [1.0, 1.0])


def test_update_rejects_shape_mismatch():
    a = Adaptive(-10.0, 10.0)
    with pytest.raises(ValueError, match="shape"):
        a.update(a.init(), [0.0, 1.0], [1.0])


def test_update_rejects_non_finite_values():
    a = Adaptive(-10.0, 10.0)
    with pytest.raises(ValueError, match="finite"):
        a.update(a.init(), [0.0, 1.0], [1.0, np.inf])


def test_update_rejects_negative_values_for_mean_target():
    a = Adaptive(-10.0, 10.0, target="mean")
    with pytest.raises(ValueError, match=">= 0"):
        a.update(a.init(), [0.0, 1.0], [1.0, -1.0])


def test_estimator_variance_rejects_reversed_range():
    with pytest.raises(ValueError, match="logsnr_min"):
        estimator_variance(W, R.Cosine().density, m1, m2, 10.0, -10.0)


def test_optimal_proposal_rejects_zero_m2():
    with pytest.raises(ValueError, match="sqrt"):
        optimal_proposal(W, lambda x: 0.0 * x, LO, HI)
