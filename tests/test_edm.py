"""EDM preconditioning, loss weight, time steps and denoiser adapters (reference), SPEC §7.

Every check compares against a closed form derived here, independently of the code:
Gaussian data $x \\sim N(0, s^2 I)$ has $E[x \\mid x + \\sigma\\epsilon] = s^2 x_{edm}/(s^2+\\sigma^2)$.
"""

import inspect
import math

import numpy as np
import pytest
from scipy import optimize

import reference as R
from reference.targets import target_factor

SIGMAS = np.geomspace(1e-3, 1e3, 25)
S2 = 0.7  # data variance of the Gaussian test distribution (≠ σ_d² on purpose)


def bayes_x_edm(x_edm, sigma, s2=S2):
    """$E[x \\mid x_{edm}]$ for $x \\sim N(0, s^2)$, $x_{edm} = x + \\sigma\\epsilon$."""
    return s2 / (s2 + sigma**2) * x_edm


# --- time steps ------------------------------------------------------------------------------


def test_edm_sigmas_values():
    # Table values of the EDM time-step formula with n = 5 (hand-checked to 4 decimals).
    expected = [80.0, 17.5278, 2.5152, 0.1698, 0.002, 0.0]
    np.testing.assert_allclose(R.edm_sigmas(5), expected, rtol=0, atol=5e-5)


@pytest.mark.parametrize("n, sigma_min, sigma_max, rho", [(2, 0.002, 80, 7), (18, 0.01, 5, 3), (40, 1e-3, 1e3, 1)])
def test_edm_sigmas_equispaced_in_sigma_to_one_over_rho(n, sigma_min, sigma_max, rho):
    s = R.edm_sigmas(n, sigma_min, sigma_max, rho)
    assert s.shape == (n + 1,) and s[-1] == 0.0
    np.testing.assert_allclose(s[[0, n - 1]], [sigma_max, sigma_min], rtol=1e-13)
    # σ^{1/ρ} is an arithmetic progression: all steps equal (σ_min^{1/ρ} - σ_max^{1/ρ})/(n-1).
    step = (sigma_min ** (1 / rho) - sigma_max ** (1 / rho)) / (n - 1)
    np.testing.assert_allclose(np.diff(s[:-1] ** (1 / rho)), step, rtol=1e-11)


# --- preconditioning -------------------------------------------------------------------------


@pytest.mark.parametrize("sigma_data", [0.25, 0.5, 1.3])
def test_edm_precond_unit_variance_and_optimal_skip(sigma_data):
    """EDM App. B.6: with data std σ_d, Var[c_in x_edm] = 1 and the effective target
    F = (x - c_skip x_edm)/c_out has unit variance; c_skip minimises that target's scale."""
    c_skip, c_out, c_in, c_noise = R.edm_precond(SIGMAS, sigma_data)
    sd2 = sigma_data**2
    np.testing.assert_allclose(c_in**2 * (sd2 + SIGMAS**2), 1.0, rtol=1e-13)
    # Var[x - c x_edm] = (1 - c)² σ_d² + c² σ²  (x, ε independent)
    var_target = (1 - c_skip) ** 2 * sd2 + c_skip**2 * SIGMAS**2
    np.testing.assert_allclose(var_target / c_out**2, 1.0, rtol=1e-12)
    np.testing.assert_allclose(c_noise, np.log(SIGMAS) / 4, rtol=1e-14)
    for sigma, c in zip(SIGMAS[::6], c_skip[::6], strict=True):
        best = optimize.minimize_scalar(
            lambda k, s=sigma: (1 - k) ** 2 * sd2 + k**2 * s**2,
            bounds=(0, 1),
            method="bounded",
            options={"xatol": 1e-12},
        )
        assert abs(best.x - c) < 1e-6


def test_edm_loss_weight_is_one_over_c_out_squared():
    for sigma_data in (0.2, 0.5, 2.0):
        _, c_out, _, _ = R.edm_precond(SIGMAS, sigma_data)
        np.testing.assert_allclose(R.edm_loss_weight(SIGMAS, sigma_data) * c_out**2, 1.0, rtol=1e-13)
        direct = (SIGMAS**2 + sigma_data**2) / (SIGMAS * sigma_data) ** 2
        np.testing.assert_allclose(R.edm_loss_weight(SIGMAS, sigma_data), direct, rtol=1e-13)


def test_effective_target_identity_and_F_factor():
    """λ_EDM c_out² ‖F − F̂‖² = λ_EDM ‖x − D‖², and ‖F − F̂‖² = f_F(λ)‖ε − ε̂‖² (SPEC §0)."""
    rng = np.random.default_rng(0)
    sigma_data = 0.5
    for sigma in (0.01, 0.3, 2.0, 50.0):
        x, eps, F_hat = rng.normal(size=(3, 16))
        x_edm = x + sigma * eps
        c_skip, c_out, _, _ = R.edm_precond(sigma, sigma_data)
        F = (x - c_skip * x_edm) / c_out
        D = c_skip * x_edm + c_out * F_hat
        weight = R.edm_loss_weight(sigma, sigma_data)
        lhs = weight * c_out**2 * np.sum((F - F_hat) ** 2)
        np.testing.assert_allclose(lhs, weight * np.sum((x - D) ** 2), rtol=1e-12)
        eps_hat = (x_edm - D) / sigma  # the ε-prediction equivalent to D
        factor = target_factor("F", R.sigma_to_logsnr(sigma), sigma_data)
        np.testing.assert_allclose(np.sum((F - F_hat) ** 2), factor * np.sum((eps - eps_hat) ** 2), rtol=1e-10)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 5.0])
def test_optimal_F_from_regression_gives_bayes_denoiser(sigma):
    """Fit F̂(u) = k·u to the F-target by least squares on Gaussian samples; the resulting
    preconditioned D equals the Bayes denoiser, within 5 standard errors of the fit."""
    rng = np.random.default_rng(1)
    sigma_data, n = 0.5, 200_000
    x = math.sqrt(S2) * rng.standard_normal(n)
    x_edm = x + sigma * rng.standard_normal(n)
    c_skip, c_out, c_in, _ = R.edm_precond(sigma, sigma_data)
    u, y = c_in * x_edm, (x - c_skip * x_edm) / c_out
    k = np.dot(u, y) / np.dot(u, u)
    se = np.sqrt(np.sum((y - k * u) ** 2) / (n - 1) / np.dot(u, u))
    D = R.denoiser_from_F(lambda inp, c_noise: k * inp, sigma_data)
    coef = D(np.array(1.0), sigma)  # D is linear in x_edm: its coefficient
    assert abs(coef - S2 / (S2 + sigma**2)) < 5 * c_out * c_in * se


def test_vp_and_ve_precond():
    c_skip, c_out, c_in, c_noise = R.vp_precond(SIGMAS)
    np.testing.assert_array_equal(c_skip, 1.0)
    np.testing.assert_allclose(c_out, -SIGMAS, rtol=1e-15)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(1 + SIGMAS**2), rtol=1e-14)
    # c_noise = (M-1) t with σ(t) = sqrt(exp(½β_d t² + β_min t) − 1): invert it back.
    t = c_noise / 999
    np.testing.assert_allclose(np.sqrt(np.expm1(0.5 * 19.9 * t**2 + 0.1 * t)), SIGMAS, rtol=1e-12)
    c_skip, c_out, c_in, c_noise = R.ve_precond(SIGMAS)
    np.testing.assert_array_equal([c_skip, c_in], 1.0)
    np.testing.assert_allclose([c_out, np.exp(c_noise)], [SIGMAS, SIGMAS / 2], rtol=1e-14)


def test_vp_precond_with_eps_network_is_the_eps_adapter():
    """VP column: D = x − σ F(x/√(1+σ²), ·) with F an ε-network equals denoiser_from_eps."""
    rng = np.random.default_rng(2)
    x_edm = rng.normal(size=(4, 3)) * 3

    def eps_model(z, logsnr):
        return np.tanh(z + 0.1 * logsnr)

    for sigma in (0.02, 1.0, 30.0):
        c_skip, c_out, c_in, _ = R.vp_precond(sigma)
        D_vp = c_skip * x_edm + c_out * eps_model(c_in * x_edm, -2 * np.log(sigma))
        np.testing.assert_allclose(R.denoiser_from_eps(eps_model)(x_edm, sigma), D_vp, rtol=1e-13)


# --- adapters from Bayes-optimal models of Gaussian data -------------------------------------


def _vp(logsnr):
    alpha2 = 1 / (1 + np.exp(-logsnr))
    return np.sqrt(alpha2), np.sqrt(1 - alpha2)


def bayes_eps(z, logsnr):
    """E[ε | z] for z = αx + σε, x ~ N(0, s²): Cov(ε, z)/Var(z) = σ/(α²s² + σ²)."""
    a, s = _vp(logsnr)
    return s / (a**2 * S2 + s**2) * z


def bayes_x(z, logsnr):
    a, s = _vp(logsnr)
    return a * S2 / (a**2 * S2 + s**2) * z


def bayes_v(z, logsnr):
    a, s = _vp(logsnr)
    return a * bayes_eps(z, logsnr) - s * bayes_x(z, logsnr)


def bayes_F(inp, c_noise, sigma_data=0.5):
    sigma = np.exp(4 * c_noise)  # c_noise = ¼ ln σ
    c_skip, c_out, c_in, _ = R.edm_precond(sigma, sigma_data)
    x_edm = inp / c_in
    return (bayes_x_edm(x_edm, sigma) - c_skip * x_edm) / c_out


@pytest.mark.parametrize(
    "denoiser",
    [
        R.denoiser_from_eps(bayes_eps),
        R.denoiser_from_x(bayes_x),
        R.denoiser_from_v(bayes_v),
        R.denoiser_from_F(bayes_F),
        R.denoiser_from_F(lambda inp, c: bayes_F(inp, c, 1.7), sigma_data=1.7),
    ],
    ids=["eps", "x", "v", "F", "F_sigma_data"],
)
def test_adapters_of_bayes_models_give_bayes_denoiser(denoiser):
    rng = np.random.default_rng(3)
    for sigma in (1e-3, 0.1, 1.0, 10.0, 80.0):
        x_edm = rng.normal(size=(5, 2)) * math.sqrt(S2 + sigma**2)
        np.testing.assert_allclose(denoiser(x_edm, sigma), bayes_x_edm(x_edm, sigma), rtol=1e-10)


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 0, 2.5, True, "8"])
def test_edm_sigmas_rejects_bad_n(n):
    # `inspect.unwrap`: without the tests' run-time type check (tests/conftest.py), which
    # rejects 2.5 and "8" for `n: int` first; this is the message callers see.
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        inspect.unwrap(R.edm_sigmas)(n)


def test_edm_sigmas_rejects_reversed_range():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        R.edm_sigmas(10, sigma_min=80.0, sigma_max=0.002)


def test_edm_sigmas_rejects_nonpositive_sigma_min():
    with pytest.raises(ValueError, match="sigma_min must be > 0"):
        R.edm_sigmas(10, sigma_min=0.0)


def test_edm_sigmas_rejects_nonpositive_rho():
    with pytest.raises(ValueError, match="rho must be > 0"):
        R.edm_sigmas(10, rho=-7.0)


@pytest.mark.parametrize("fn", [R.edm_precond, R.edm_loss_weight, R.vp_precond, R.ve_precond])
def test_precond_rejects_nonpositive_sigma(fn):
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        fn(np.array([1.0, 0.0]))


def test_precond_rejects_nonpositive_sigma_data():
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        R.edm_precond(1.0, sigma_data=-0.5)


def test_denoiser_from_F_rejects_bad_sigma_data():
    with pytest.raises(ValueError, match="sigma_data must be a finite number"):
        R.denoiser_from_F(bayes_F, sigma_data=math.nan)


def test_adapter_rejects_sigma_zero():
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        R.denoiser_from_eps(bayes_eps)(np.ones(3), 0.0)
