"""Analytic test distributions (SPEC §8), reference side: against scipy, quadrature,
Tweedie's formula, 60-digit `decimal` arithmetic and Monte Carlo confidence bounds."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
from scipy import integrate, special, stats

from reference import GaussianData, GaussianMixture

# A 1-D, a 2-D diagonal and a 3-D isotropic mixture.
MIX1 = GaussianMixture([0.2, 0.5, 0.3], [[-2.0], [0.5], [3.0]], [0.4, 1.0, 0.7])
MIX2 = GaussianMixture([0.6, 0.4], [[-1.0, 0.5], [1.5, -0.5]], [[0.5, 1.2], [0.8, 0.3]])
MIX3 = GaussianMixture([0.25, 0.25, 0.5], [[1.0, 0.0, -1.0], [-1.0, 2.0, 0.0], [0.0, -1.0, 1.0]], [0.3, 0.6, 1.1])
MIXTURES = [MIX1, MIX2, MIX3]
GAUSS = GaussianData(0.5, 3)

# 5 standard errors: a correct implementation fails a fixed-seed check with probability
# ~6e-7 per comparison (normal approximation, n >= 1e5 draws).
Z = 5.0


def _scales(logsnr):
    """(α, σ) straight from the definitions α² = sigmoid(λ), σ² = sigmoid(-λ)."""
    return np.sqrt(special.expit(logsnr)), np.sqrt(special.expit(-logsnr))


def _mixture_moments(mix):
    """Exact mean and covariance: E x = Σ w μ, E xxᵀ = Σ w (diag s² + μμᵀ)."""
    w, mu = mix.weights, mix.means
    s2 = np.broadcast_to(mix.stds.reshape(len(w), -1) ** 2, mu.shape)
    mean = w @ mu
    second = sum(w[k] * (np.diag(s2[k]) + np.outer(mu[k], mu[k])) for k in range(len(w)))
    return mean, second - np.outer(mean, mean)


def _stds_full(mix):
    return np.broadcast_to(mix.stds.reshape(len(mix.weights), -1), mix.means.shape)


# --- densities ----------------------------------------------------------------------------


def test_log_prob_integrates_to_one():
    # 1-D by quad on [-20, 20] (mass outside < 1e-30 here), 2-D Gaussian by dblquad.
    opts = dict(epsabs=1e-12, epsrel=1e-12)
    for mix, pts in [(MIX1, [-2.0, 0.5, 3.0]), (GaussianMixture([1.0], [[0.3]], [0.9]), [0.3])]:
        total, _ = integrate.quad(lambda x, m=mix: np.exp(m.log_prob([x])), -20, 20, points=pts, **opts)
        assert abs(total - 1.0) < 1e-9
    total, _ = integrate.quad(lambda x: np.exp(GaussianData(0.7, 1).log_prob([x])), -20, 20, **opts)
    assert abs(total - 1.0) < 1e-9
    gauss2 = GaussianData(0.7, 2)
    total, _ = integrate.dblquad(lambda y, x: np.exp(gauss2.log_prob([x, y])), -10, 10, -10, 10, epsabs=1e-10)
    assert abs(total - 1.0) < 1e-9
    # 2-D mixture (dblquad takes seconds on it): the trapezoid rule converges geometrically
    # for smooth decaying integrands, error ~ exp(-2π² s_min²/h²) ~ e^-1100 (h = 0.04, s_min = 0.3).
    grid = np.linspace(-12, 12, 601)
    xy = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1)
    total = integrate.trapezoid(integrate.trapezoid(np.exp(MIX2.log_prob(xy)), grid), grid)
    assert abs(total - 1.0) < 1e-12


@pytest.mark.parametrize("logsnr", [-4.0, 0.0, 4.0])
def test_log_prob_noisy_integrates_to_one(logsnr):
    alpha, _ = _scales(logsnr)
    total, _ = integrate.quad(
        lambda z: np.exp(MIX1.log_prob_noisy([z], logsnr)),
        -20,
        20,
        points=list(alpha * MIX1.means[:, 0]),
        epsabs=1e-12,
        epsrel=1e-12,
    )
    assert abs(total - 1.0) < 1e-9


def test_log_prob_matches_scipy():
    x = np.random.default_rng(0).normal(size=(7, 3)) * 2.0
    want = stats.multivariate_normal(np.zeros(3), 0.5 * np.eye(3)).logpdf(x)
    np.testing.assert_allclose(GAUSS.log_prob(x), want, rtol=1e-12)
    for mix in [MIX2, MIX3]:
        x = np.random.default_rng(1).normal(size=(9, mix.dim)) * 2.0
        s = _stds_full(mix)
        dens = sum(
            w * stats.multivariate_normal(m, np.diag(sk**2)).pdf(x)
            for w, m, sk in zip(mix.weights, mix.means, s, strict=True)
        )
        np.testing.assert_allclose(mix.log_prob(x), np.log(dens), rtol=1e-12)


@pytest.mark.parametrize("logsnr", [-50.0, -10.0, -1.0, 0.0, 2.0, 10.0, 50.0])
def test_gaussian_log_prob_noisy_matches_scipy(logsnr):
    # z = αx + σε ~ N(0, (α² s² + σ²) I).
    alpha, sigma = _scales(logsnr)
    z = np.random.default_rng(2).normal(size=(5, 3))
    want = stats.multivariate_normal(np.zeros(3), (alpha**2 * 0.5 + sigma**2) * np.eye(3)).logpdf(z)
    np.testing.assert_allclose(GAUSS.log_prob_noisy(z, logsnr), want, rtol=1e-12)


@pytest.mark.parametrize("logsnr", [-3.0, 0.0, 3.0])
def test_mixture_log_prob_noisy_is_the_convolution(logsnr):
    # p(z) = ∫ p(x) N(z; αx, σ²) dx, by adaptive quadrature (tolerance 1e-12).
    alpha, sigma = _scales(logsnr)
    for z in [-2.5, 0.8, 2.9]:
        integrand = lambda x, z=z: np.exp(MIX1.log_prob([x])) * stats.norm.pdf(z, alpha * x, sigma)
        pts = sorted([*MIX1.means[:, 0], z / alpha])
        want, _ = integrate.quad(integrand, -25, 25, points=pts, epsabs=1e-14, epsrel=1e-12, limit=200)
        assert MIX1.log_prob_noisy([z], logsnr) == pytest.approx(math.log(want), rel=1e-9)


# --- Bayes-optimal denoisers --------------------------------------------------------------


@pytest.mark.parametrize("logsnr", [-6.0, -2.0, 0.0, 2.0, 6.0])
@pytest.mark.parametrize("dens", [GAUSS, MIX1, MIX2, MIX3], ids=["gauss", "mix1", "mix2", "mix3"])
def test_tweedie(dens, logsnr):
    r"""$\hat x = (z + \sigma^2\nabla\ln p(z))/\alpha$ and $\hat\epsilon = -\sigma\nabla\ln p(z)$.

    Central differences with h = 1e-5: truncation h²|f'''|/6 ≲ 1e-9 and rounding
    eps·|f|/h ≲ 1e-10 here; the division by α (≥ 0.05) amplifies the cancellation in
    z + σ²∇ln p by at most 1/α² = 400, so rtol 1e-6 has margin.
    """
    alpha, sigma = _scales(logsnr)
    rng = np.random.default_rng(3)
    z = alpha * dens.sample(4, rng=rng) + sigma * rng.standard_normal((4, dens.dim))
    h = 1e-5
    grad = np.stack(
        [
            (dens.log_prob_noisy(z + h * e, logsnr) - dens.log_prob_noisy(z - h * e, logsnr)) / (2 * h)
            for e in np.eye(dens.dim)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(dens.denoise(z, logsnr), (z + sigma**2 * grad) / alpha, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dens.eps(z, logsnr), -sigma * grad, rtol=1e-6, atol=1e-9)


def _decimal_posterior(weights, means, stds, z, logsnr):
    """Naive x̂, ε̂ = (z - αx̂)/σ and ln p(z) in 60-digit decimal arithmetic (one example).

    With 60 digits the division by σ ≈ e^{-25} and the cancellation in z - αx̂ at λ = 50
    still leave > 30 correct digits, so this checks the stable float64 forms to ~1e-15.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        lam = Decimal(float(logsnr))
        a2 = 1 / (1 + (-lam).exp())
        s2 = 1 / (1 + lam.exp())
        alpha, sigma = a2.sqrt(), s2.sqrt()
        two_pi = 2 * Decimal(math.pi)
        zd = [Decimal(float(v)) for v in z]
        dens, posts = [], []
        for w, mu, sd in zip(weights, means, stds, strict=True):
            mu = [Decimal(float(v)) for v in mu]
            var = [Decimal(float(v)) ** 2 for v in sd]
            v = [a2 * s + s2 for s in var]
            log_n = sum(
                -((zj - alpha * mj) ** 2) / (2 * vj) - (two_pi * vj).ln() / 2
                for zj, mj, vj in zip(zd, mu, v, strict=True)
            )
            dens.append(Decimal(float(w)) * log_n.exp())
            posts.append(
                [mj + alpha * sj / vj * (zj - alpha * mj) for zj, mj, sj, vj in zip(zd, mu, var, v, strict=True)]
            )
        total = sum(dens)
        xhat = [sum(d / total * p[j] for d, p in zip(dens, posts, strict=True)) for j in range(len(zd))]
        eps = [(zj - alpha * xj) / sigma for zj, xj in zip(zd, xhat, strict=True)]
        return (
            np.array([float(v) for v in xhat]),
            np.array([float(v) for v in eps]),
            float(total.ln()),
        )


@pytest.mark.parametrize("logsnr", [-50.0, -30.0, -8.0, 0.0, 8.0, 30.0, 50.0])
@pytest.mark.parametrize("dens", [GAUSS, MIX2, MIX3], ids=["gauss", "mix2", "mix3"])
def test_stable_forms_match_high_precision(dens, logsnr):
    # float64 stable forms vs 60-digit naive formulas; exp of a log-space argument of size
    # ≤ 50 costs ≤ 50 ulp, hence rtol 1e-12 (atol 1e-13·max|·| for entries that cancel).
    if isinstance(dens, GaussianData):
        params = ([1.0], [np.zeros(dens.dim)], [np.full(dens.dim, math.sqrt(dens.var))])
    else:
        params = (dens.weights, dens.means, _stds_full(dens))
    alpha, sigma = _scales(logsnr)
    rng = np.random.default_rng(4)
    z = alpha * dens.sample(3, rng=rng) + sigma * rng.standard_normal((3, dens.dim))
    for zi in z:
        xhat, eps, logp = _decimal_posterior(*params, zi, logsnr)
        got_x, got_e = dens.denoise(zi, logsnr), dens.eps(zi, logsnr)
        assert np.all(np.isfinite(got_x)) and np.all(np.isfinite(got_e))
        np.testing.assert_allclose(got_x, xhat, rtol=1e-12, atol=1e-13 * np.max(np.abs(xhat)))
        np.testing.assert_allclose(got_e, eps, rtol=1e-12, atol=1e-13 * np.max(np.abs(eps)))
        assert dens.log_prob_noisy(zi, logsnr) == pytest.approx(logp, rel=1e-12, abs=1e-12)


def test_broadcasting_over_batches_and_logsnr():
    # A batch with per-example λ equals the per-example calls.
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 2))
    lam = np.array([-20.0, -1.0, 0.5, 20.0])
    for method in ["log_prob_noisy", "denoise", "eps"]:
        batched = getattr(MIX2, method)(z, lam)
        single = np.stack([getattr(MIX2, method)(zi, li) for zi, li in zip(z, lam, strict=True)])
        np.testing.assert_allclose(batched, single, rtol=1e-14, atol=1e-300)


def test_single_component_mixture_is_gaussian_data():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(5, 3)) * 1.5
    iso = GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [math.sqrt(0.5)])
    diag = GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [[math.sqrt(0.5)] * 3])
    np.testing.assert_allclose(iso.log_prob(z), GAUSS.log_prob(z), rtol=1e-13)
    for mix in [iso, diag]:
        for lam in [-50.0, -10.0, 0.0, 3.0, 50.0]:
            for method in ["log_prob_noisy", "denoise", "eps"]:
                np.testing.assert_allclose(getattr(mix, method)(z, lam), getattr(GAUSS, method)(z, lam), rtol=1e-13)


# --- the Bayes-optimal loss and the closed forms -----------------------------------------


@pytest.mark.parametrize("logsnr", [-8.0, -2.0, 0.0, 3.0, 10.0])
def test_gaussian_optimal_loss_moments(logsnr):
    # ℓ* = ‖ε - ε̂‖² ~ v χ²_d with v = sigmoid(λ + ln s²): mean, second moment (5 SE) and law (KS).
    data = GaussianData(0.5, 4)
    rng = np.random.default_rng(7)
    n = 100_000
    x, eps = data.sample(n, rng=rng), rng.standard_normal((n, 4))
    loss = data.optimal_loss_from_noise(x, logsnr, eps)
    for values, want in [(loss, data.loss_mean(logsnr)), (loss**2, data.loss_second_moment(logsnr))]:
        assert abs(values.mean() - want) < Z * values.std(ddof=1) / math.sqrt(n)
    v = special.expit(logsnr + math.log(0.5))
    assert stats.kstest(loss / v, stats.chi2(4).cdf).pvalue > 1e-3
    # optimal_loss is the mean of the same draws.
    rng = np.random.default_rng(7)
    assert data.optimal_loss(logsnr, n, rng=rng) == pytest.approx(loss.mean(), rel=1e-12)


@pytest.mark.parametrize("logsnr", [-3.0, 0.0, 2.0, 6.0])
def test_mixture_optimal_loss_against_quadrature(logsnr):
    # ε̂ = E[ε|z] ⇒ E‖ε - ε̂‖² = E‖ε‖² - E‖ε̂‖² = 1 - ∫ p(z) ε̂(z)² dz (1-D).
    alpha, _ = _scales(logsnr)
    integrand = lambda z: np.exp(MIX1.log_prob_noisy([z], logsnr)) * MIX1.eps([z], logsnr)[0] ** 2
    pts = list(alpha * MIX1.means[:, 0])
    want = 1.0 - integrate.quad(integrand, -25, 25, points=pts, epsabs=1e-13, limit=200)[0]
    rng = np.random.default_rng(8)
    n = 200_000
    x, eps = MIX1.sample(n, rng=rng), rng.standard_normal((n, 1))
    loss = MIX1.optimal_loss_from_noise(x, logsnr, eps)
    assert abs(loss.mean() - want) < Z * loss.std(ddof=1) / math.sqrt(n)
    # Vectorised over λ with common random numbers.
    lams = np.array([logsnr, logsnr + 1.0])
    est = MIX1.optimal_loss(lams, 1000, rng=np.random.default_rng(9))
    rng = np.random.default_rng(9)
    x, eps = MIX1.sample(1000, rng=rng), rng.standard_normal((1000, 1))
    np.testing.assert_allclose(est, [MIX1.optimal_loss_from_noise(x, lam, eps).mean() for lam in lams], rtol=1e-12)


@pytest.mark.parametrize("logsnr", [-4.0, 0.0, 4.0])
def test_mutual_information_monte_carlo(logsnr):
    # I(x; z) = E[ln p(z|x) - ln p(z)], p(z|x) = N(αx, σ²I) from scipy.
    alpha, sigma = _scales(logsnr)
    rng = np.random.default_rng(10)
    n = 100_000
    x = GAUSS.sample(n, rng=rng)
    z = alpha * x + sigma * rng.standard_normal(x.shape)
    pmi = stats.norm.logpdf(z, alpha * x, sigma).sum(-1) - GAUSS.log_prob_noisy(z, logsnr)
    assert abs(pmi.mean() - GAUSS.mutual_information(logsnr)) < Z * pmi.std(ddof=1) / math.sqrt(n)


def _decimal_prior_kl(var, dim, logsnr):
    """(d/2)(v - 1 - ln v), v = sigmoid(λ) s² + sigmoid(-λ), in 60 digits."""
    with localcontext() as ctx:
        ctx.prec = 60
        lam, s2 = Decimal(float(logsnr)), Decimal(float(var))
        v = s2 / (1 + (-lam).exp()) + 1 / (1 + lam.exp())
        return float(Decimal(dim) / 2 * (v - 1 - v.ln()))


@pytest.mark.parametrize("var", [1e-6, 0.5, 0.95, 1.0, 1.2, 30.0])
def test_marginal_prior_kl_high_precision(var):
    # Every branch (series near v = 1, log1p, log-space for v <= 1/2) within 1e-13 relative.
    data = GaussianData(var, 3)
    lams = np.concatenate([np.linspace(-50, 50, 41), [-3.0, -2.3, -2.2, 2.2, 2.3]])
    got = data.marginal_prior_kl(lams)
    want = np.array([_decimal_prior_kl(var, 3, lam) for lam in lams])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-100)  # decimal rounding at var = 1


def test_marginal_prior_kl_monte_carlo():
    # KL(q ‖ N(0,I)) = E_q[ln q(z) - ln N(z; 0, I)] with z = αx + σε.
    rng = np.random.default_rng(11)
    n = 100_000
    for logsnr in [-2.0, 1.0, 5.0]:
        alpha, sigma = _scales(logsnr)
        z = alpha * GAUSS.sample(n, rng=rng) + sigma * rng.standard_normal((n, 3))
        log_ratio = GAUSS.log_prob_noisy(z, logsnr) - stats.norm.logpdf(z).sum(-1)
        err = abs(log_ratio.mean() - GAUSS.marginal_prior_kl(logsnr))
        assert err < Z * log_ratio.std(ddof=1) / math.sqrt(n)


def test_gaussian_closed_forms_against_definitions():
    # E ℓ* = Σ_j Var(ε_j - ε̂_j) = d α² s² / v and I = (d/2) ln(v/σ²), from α, σ directly.
    data = GaussianData(2.5, 5)
    lams = np.linspace(-20, 20, 17)
    alpha, sigma = _scales(lams)
    v = alpha**2 * 2.5 + sigma**2
    np.testing.assert_allclose(data.loss_mean(lams), 5 * alpha**2 * 2.5 / v, rtol=1e-13)
    np.testing.assert_allclose(data.loss_second_moment(lams), (5 * 7) * (alpha**2 * 2.5 / v) ** 2, rtol=1e-13)
    # ln(v/σ²) = ln(1 + s² α²/σ²) = log1p(s² e^λ).
    np.testing.assert_allclose(data.mutual_information(lams), 2.5 * np.log1p(2.5 * np.exp(lams)), rtol=1e-13)


# --- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("dens", [GAUSS, MIX2, MIX3], ids=["gauss", "mix2", "mix3"])
def test_sample_moments(dens):
    # Mean and covariance entries within 5 SE; the SE of a covariance entry from the sample
    # variance of the centred products.
    if isinstance(dens, GaussianData):
        mean, cov = np.zeros(dens.dim), dens.var * np.eye(dens.dim)
    else:
        mean, cov = _mixture_moments(dens)
    n = 200_000
    x = dens.sample(n, rng=np.random.default_rng(12))
    assert x.shape == (n, dens.dim)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < Z * se_mean)
    c = x - mean
    prods = c[:, :, None] * c[:, None, :]
    se_cov = prods.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(prods.mean(0) - cov) < Z * se_cov)


def test_sample_ks_1d_mixture():
    x = MIX1.sample(20_000, rng=np.random.default_rng(13))[:, 0]
    s = _stds_full(MIX1)[:, 0]
    cdf = lambda t: sum(
        w * stats.norm.cdf(t, m, sk) for w, m, sk in zip(MIX1.weights, MIX1.means[:, 0], s, strict=True)
    )
    assert stats.kstest(x, cdf).pvalue > 1e-3
    # GaussianData, every coordinate.
    y = GaussianData(0.7, 2).sample(20_000, rng=np.random.default_rng(14))
    for j in range(2):
        assert stats.kstest(y[:, j], stats.norm(0, math.sqrt(0.7)).cdf).pvalue > 1e-3


def test_sample_from_noise_component_choice():
    # Component k is the first with u < w_1 + ... + w_k (cumulative 0.2, 0.7, 1.0).
    u = np.array([0.0, 0.19, 0.2, 0.69, 0.7, 0.999999])
    got = MIX1.sample_from_noise(u, np.zeros((6, 1)))[:, 0]
    np.testing.assert_array_equal(got, MIX1.means[[0, 0, 1, 1, 2, 2], 0])
    noise = np.array([[1.0, -2.0]])
    np.testing.assert_allclose(MIX2.sample_from_noise(np.array([0.9]), noise), [[1.5 + 0.8, -0.5 - 0.6]])
    np.testing.assert_allclose(GAUSS.sample_from_noise(np.ones((2, 3))), math.sqrt(0.5) * np.ones((2, 3)))


# --- bad inputs ---------------------------------------------------------------------------

W, M, S = [0.4, 0.6], [[0.0, 1.0], [2.0, -1.0]], [1.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(var=0.0, dim=2), "var must be > 0"),
        (dict(var=-1.0, dim=2), "var must be > 0"),
        (dict(var=float("nan"), dim=2), "var must be a finite number"),
        (dict(var=float("inf"), dim=2), "var must be a finite number"),
        (dict(var=1.0, dim=0), "dim must be a positive integer"),
        (dict(var=1.0, dim=2.5), "dim must be a positive integer"),
        (dict(var=1.0, dim=True), "dim must be a positive integer"),
    ],
)
def test_gaussian_data_rejects(kwargs, match):
    # dim=2.5 breaks the `int` annotation: the tests' run-time type check (tests/conftest.py)
    # rejects it first, with a TypeError naming the parameter.
    with pytest.raises((ValueError, TypeError), match=f"{match}|typechecking parameter 'dim'"):
        GaussianData(**kwargs)


BAD_MIXTURES = [
    (dict(weights=[0.4, 0.5], means=M, stds=S), "weights must sum to 1.*normalise"),
    (dict(weights=[1.2, -0.2], means=M, stds=S), "weights must all be > 0"),
    (dict(weights=[0.0, 1.0], means=M, stds=S), "weights must all be > 0"),
    (dict(weights=[[0.4, 0.6]], means=M, stds=S), r"weights must have shape \(K,\)"),
    (dict(weights=[], means=np.zeros((0, 2)), stds=[]), r"weights must have shape \(K,\)"),
    (dict(weights=[0.2, 0.3, 0.5], means=M, stds=S), r"means must have shape \(K, dim\) = \(3, dim\)"),
    (dict(weights=W, means=[0.0, 1.0], stds=S), r"means\[:, None\]"),
    (dict(weights=W, means=M, stds=[1.0, 0.5, 2.0]), r"stds must have shape \(2,\).*or \(2, 2\)"),
    (dict(weights=W, means=M, stds=[[1.0, 0.5]]), r"stds must have shape"),
    (dict(weights=W, means=M, stds=[1.0, 0.0]), "stds must all be > 0"),
    (dict(weights=W, means=M, stds=[1.0, -0.5]), "stds must all be > 0"),
    (dict(weights=W, means=M, stds=[1.0, float("inf")]), "stds must be finite"),
    (dict(weights=W, means=[[0.0, float("nan")], [2.0, -1.0]], stds=S), "means must be finite"),
    (dict(weights=[float("nan"), 0.6], means=M, stds=S), "weights must be finite"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_MIXTURES)
def test_gaussian_mixture_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


@pytest.mark.parametrize("method", ["log_prob", "denoise", "eps", "log_prob_noisy"])
def test_wrong_event_shape_is_rejected(method):
    args = (np.zeros((4, 2)),) if method == "log_prob" else (np.zeros((4, 2)), 0.0)
    for dens in [GAUSS, MIX3]:
        with pytest.raises(ValueError, match=r"last axis has length 3"):
            getattr(dens, method)(*args)
