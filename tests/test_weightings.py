"""Reference weightings: the implied-weighting identities, monotonicity, derivatives (SPEC §2)."""

import numpy as np
import pytest
from scipy import optimize

import reference as R

LAM = np.linspace(-19.5, 19.5, 157)

MONOTONE = {
    "ELBO": (R.ELBO(), True),
    "EpsCosine": (R.EpsCosine(), False),
    "EDM": (R.EDM(), False),
    "Exponential": (R.Exponential(0.5), True),
    "InDI": (R.InDI(), True),
    "MinSNR": (R.MinSNR(5.0), False),
    "Sigmoid": (R.Sigmoid(2.0), True),
    "Shifted(Sigmoid)": (R.Shifted(R.Sigmoid(2.0), 1.0), True),
    "Monotonic(EDM)": (R.Monotonic(R.EDM()), True),
}


@pytest.mark.parametrize("name", MONOTONE)
def test_monotone_flags_match_table(name):
    weighting, expected = MONOTONE[name]
    assert R.is_monotonic(weighting, -20.0, 20.0) is expected


@pytest.mark.parametrize("name", MONOTONE)
def test_derivative_matches_finite_difference(name):
    weighting, _ = MONOTONE[name]
    lam = LAM[np.abs(LAM - np.log(5.0)) > 0.01]  # MinSNR's kink at ln γ
    h = 1e-5
    fd = (weighting(lam + h) - weighting(lam - h)) / (2 * h)
    scale = np.abs(weighting(lam)) + 1e-300
    np.testing.assert_allclose(weighting.derivative(lam) / scale, fd / scale, atol=1e-7)


def _constant_ratio(a, b):
    ratio = a(LAM) / b(LAM)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    return ratio[0]


def test_implied_eps_cosine():
    _constant_ratio(R.Implied(R.Cosine(), "eps"), R.EpsCosine())


def test_implied_v_cosine_is_exponential():
    _constant_ratio(R.Implied(R.Cosine(), "v"), R.Exponential(0.5))


def test_implied_flow_u_is_exponential():
    _constant_ratio(R.Implied(R.FlowOT(), "u"), R.Exponential(0.5))


def test_implied_flow_x_is_indi():
    _constant_ratio(R.Implied(R.FlowOT(), "x"), R.InDI())


def test_implied_edm_ratio_is_two():
    sigma_data = 0.5

    def loss_weight(lam):  # λ_EDM(σ) = (σ² + σ_d²)/(σ σ_d)², σ = e^{-λ/2}
        sigma2 = np.exp(-lam)
        return (sigma2 + sigma_data**2) / (sigma2 * sigma_data**2)

    ratio = _constant_ratio(R.Implied(R.EDMLogNormal(), "x", loss_weight), R.EDM())
    # The schedule truncates N(2.4, 2.4²) at ±20 and so renormalises by 1 - 1e-13.
    assert ratio == pytest.approx(2.0, rel=1e-12)


def test_implied_min_snr():
    _constant_ratio(R.Implied(R.Cosine(), "eps", lambda lam: np.minimum(np.exp(lam), 5.0) / np.exp(lam)), R.MinSNR(5.0))


def test_monotonic_of_unimodal_is_clamped_argument():
    w = R.EDM()
    res = optimize.minimize_scalar(lambda lam: -w(lam), bounds=(-10, 10), method="bounded", options={"xatol": 1e-10})
    lam_star = res.x
    mono = R.Monotonic(w, -20.0, 20.0)
    np.testing.assert_allclose(mono(LAM), w(np.maximum(LAM, lam_star)), rtol=1e-6)


def test_monotonic_of_monotone_is_identity():
    w = R.Sigmoid(2.0)
    np.testing.assert_allclose(R.Monotonic(w)(LAM), w(LAM), rtol=1e-15)


def test_monotonic_of_bimodal_takes_later_peak():
    class TwoBumps(R.AbstractWeighting):
        kinks = ()

        def __call__(self, lam):
            lam = np.asarray(lam, dtype=np.float64)
            return np.exp(-0.5 * (lam + 5) ** 2) + 0.5 * np.exp(-0.5 * (lam - 5) ** 2) + 1e-3

    w = TwoBumps()
    mono = R.Monotonic(w)
    grid = np.linspace(-20, 20, 400001)
    brute = np.maximum.accumulate(w(grid)[::-1])[::-1]  # suffix maximum on a fine grid
    idx = np.searchsorted(grid, LAM)
    np.testing.assert_allclose(mono(LAM), brute[idx], rtol=1e-6)
    assert R.is_monotonic(mono)


def test_weightings_finite_over_float64_range():
    lam = np.linspace(-50, 50, 1001)
    for weighting, _ in MONOTONE.values():
        assert np.all(np.isfinite(weighting(lam))) and np.all(weighting(lam) > 0)
        assert np.all(np.isfinite(weighting.derivative(lam)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: R.MinSNR(gamma=0.0), "gamma must be > 0"),
        (lambda: R.EDM(p_std=-1.0), "p_std must be > 0"),
        (lambda: R.EDM(sigma_data=0.0), "sigma_data must be > 0"),
        (lambda: R.Sigmoid(bias=float("nan")), "bias must be a finite"),
        (lambda: R.Exponential(rate=float("inf")), "rate must be a finite"),
        (lambda: R.Implied(R.Cosine(), "score"), "Unknown target"),
        (lambda: R.Monotonic(R.EDM(), 5.0, -5.0), "reversed"),
        (lambda: R.is_monotonic(R.EDM(), 1.0, 1.0), "Empty or reversed"),
    ],
)
def test_bad_weighting_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
