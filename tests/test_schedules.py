"""Reference schedules against closed forms and numerical calculus (SPEC §1)."""

import numpy as np
import pytest
from scipy import integrate, stats

import reference as R

SCHEDULES = {
    "linear": R.LinearLogSNR(-10.0, 12.0),
    "cosine": R.Cosine(-20.0, 20.0),
    "cosine-shifted": R.Cosine(-15.0, 10.0, shift=2 * np.log(32 / 64)),
    "cosine-interpolated": R.CosineInterpolated(-15.0, 15.0, shift_start=1.0, shift_end=-1.0),
    "ddpm": R.DDPMLinear(),
    "edm": R.EDMLogNormal(),
    "edm-narrow": R.EDMLogNormal(logsnr_min=-8.0, logsnr_max=12.0),
    "flow": R.FlowOT(-20.0, 20.0),
}
T = np.linspace(0.0, 1.0, 201)


@pytest.fixture(params=SCHEDULES.values(), ids=SCHEDULES.keys())
def schedule(request):
    return request.param


def test_endpoints(schedule):
    np.testing.assert_allclose(schedule.logsnr(0.0), schedule.logsnr_max, rtol=1e-12)
    np.testing.assert_allclose(schedule.logsnr(1.0), schedule.logsnr_min, rtol=1e-12)


def test_strictly_decreasing(schedule):
    assert np.all(np.diff(schedule.logsnr(T)) < 0)
    assert np.all(schedule.dlogsnr_dt(T) < 0)


def test_inverse_round_trip(schedule):
    np.testing.assert_allclose(schedule.inverse(schedule.logsnr(T)), T, atol=1e-12)


def test_density_integrates_to_one(schedule):
    lo, hi = schedule.logsnr_min, schedule.logsnr_max
    mass, _ = integrate.quad(schedule.density, lo, hi, epsabs=1e-13, epsrel=1e-12, limit=200)
    assert mass == pytest.approx(1.0, abs=1e-9)


def test_density_is_minus_dt_dlogsnr(schedule):
    lam = schedule.logsnr(T)
    np.testing.assert_allclose(schedule.density(lam), -1.0 / schedule.dlogsnr_dt(T), rtol=1e-10)
    # and against a central difference of the inverse, independent of dlogsnr_dt
    inner = lam[5:-5]
    h = 1e-5
    fd = -(schedule.inverse(inner + h) - schedule.inverse(inner - h)) / (2 * h)
    np.testing.assert_allclose(schedule.density(inner), fd, rtol=1e-6)


def test_dlogsnr_dt_matches_finite_difference(schedule):
    t = T[5:-5]
    h = 1e-6
    fd = (schedule.logsnr(t + h) - schedule.logsnr(t - h)) / (2 * h)
    np.testing.assert_allclose(schedule.dlogsnr_dt(t), fd, rtol=1e-6)


def test_cosine_matches_textbook_formula():
    s = R.Cosine(-12.0, 9.0, shift=0.7)
    a = np.arctan(np.exp(-(9.0 - 0.7) / 2))
    b = np.arctan(np.exp(-(-12.0 - 0.7) / 2))
    np.testing.assert_allclose(s.logsnr(T), -2 * np.log(np.tan(a + T * (b - a))) + 0.7, rtol=1e-10, atol=1e-10)


def test_ddpm_matches_alpha_bar():
    s = R.DDPMLinear(beta_min=0.1, beta_max=20.0, t_eps=1e-5)
    tau = 1e-5 + T * (1 - 1e-5)
    alpha_bar = np.exp(-(0.1 * tau + 0.5 * (20.0 - 0.1) * tau**2))  # ᾱ = exp(-∫β)
    np.testing.assert_allclose(s.logsnr(T), np.log(alpha_bar / (1 - alpha_bar)), rtol=1e-9)


def test_edm_lognormal_is_truncated_normal():
    s = R.EDMLogNormal(p_mean=-1.2, p_std=1.2, logsnr_min=-8.0, logsnr_max=12.0)
    mu, sd = 2.4, 2.4
    ref = stats.truncnorm((-8.0 - mu) / sd, (12.0 - mu) / sd, loc=mu, scale=sd)
    lam = np.linspace(-8, 12, 101)
    np.testing.assert_allclose(s.density(lam), ref.pdf(lam), rtol=1e-10)
    np.testing.assert_allclose(s.logsnr(T[1:-1]), ref.ppf(1 - T[1:-1]), rtol=1e-9, atol=1e-9)


def test_flow_ot_is_rectified_flow():
    s = R.FlowOT(-20.0, 20.0)
    tp = 1 / (1 + np.exp(10.0)) + T * (1 / (1 + np.exp(-10.0)) - 1 / (1 + np.exp(10.0)))
    np.testing.assert_allclose(s.logsnr(T), 2 * np.log((1 - tp) / tp), rtol=1e-9, atol=1e-9)


def test_alpha_sigma_and_edm_sigma():
    lam = np.linspace(-50, 50, 101)
    alpha, sigma = R.alpha_sigma(lam)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.log(alpha**2) - np.log(sigma**2), lam, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.sigma_to_logsnr(R.logsnr_to_sigma(lam)), lam, rtol=1e-14, atol=1e-13)
    np.testing.assert_allclose(R.logsnr_to_sigma(lam), sigma / alpha, rtol=1e-12)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: R.LinearLogSNR(5.0, -5.0), "reversed"),
        (lambda: R.Cosine(3.0, 3.0), "Empty or reversed"),
        (lambda: R.FlowOT(float("nan"), 1.0), "finite"),
        (lambda: R.Cosine(-5.0, 5.0, shift=float("inf")), "finite"),
        (lambda: R.EDMLogNormal(p_std=0.0), "p_std must be > 0"),
        (lambda: R.EDMLogNormal(p_mean=-200.0), "no probability mass"),
        (lambda: R.DDPMLinear(beta_min=5.0, beta_max=1.0), "beta_max > beta_min"),
        (lambda: R.DDPMLinear(beta_min=-1.0), "beta_min must be > 0"),
        (lambda: R.DDPMLinear(t_eps=1.5), "t_eps"),
        (lambda: R.CosineInterpolated(-15, 15, shift_start=-40.0, shift_end=40.0), "not strictly decreasing"),
    ],
)
def test_bad_schedule_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
