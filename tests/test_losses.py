"""Reference losses (SPEC §3) against independent computations: Gaussian KL formulas,
the discretised Gaussian likelihood, quadrature in t, and Monte Carlo unbiasedness."""

import math

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import eqx_impl as E
import reference as R
from tests.nets import init_params, numpy_mlp

DIM = 3
PARAMS = init_params(DIM, seed=1)
MLP = numpy_mlp(PARAMS)


def _alpha_sigma(lam):
    """Independent of the package: α² = 1/(1+e^{-λ}), σ² = 1/(1+e^{λ})."""
    return math.sqrt(1.0 / (1.0 + math.exp(-lam))), math.sqrt(1.0 / (1.0 + math.exp(lam)))


def _gaussian_kl(mu0, cov0, mu1, cov1):
    """KL(N(mu0, cov0) || N(mu1, cov1)) for full covariance matrices (the textbook formula)."""
    k = mu0.shape[0]
    inv1 = np.linalg.inv(cov1)
    diff = mu1 - mu0
    _, logdet0 = np.linalg.slogdet(cov0)
    _, logdet1 = np.linalg.slogdet(cov1)
    return 0.5 * (np.trace(inv1 @ cov0) + diff @ inv1 @ diff - k + logdet1 - logdet0)


@pytest.fixture
def example():
    rng = np.random.default_rng(7)
    return rng.normal(size=DIM), rng.standard_normal(DIM)


# --- eps_loss, weighted_loss, vdm_continuous_loss --------------------------------------------


@pytest.mark.parametrize("lam", [-50.0, -7.5, 0.0, 3.0, 50.0])
def test_eps_loss_of_linear_model(example, lam):
    """ε̂ = 0.3 z + 0.1 gives ‖ε − 0.3(αx + σε) − 0.1‖²; α, σ from math.exp (to 1e-14)."""
    x, eps = example
    alpha, sigma = _alpha_sigma(lam)
    expected = sum((e - 0.3 * (alpha * xi + sigma * e) - 0.1) ** 2 for xi, e in zip(x, eps, strict=True))
    got = R.eps_loss(lambda z, _: 0.3 * z + 0.1, x, lam, eps)
    assert got == pytest.approx(expected, rel=1e-14)


def test_eps_loss_passes_logsnr_to_model(example):
    x, eps = example
    seen = []
    R.eps_loss(lambda z, lam: seen.append(lam) or z, x, 1.25, eps)
    assert seen == [1.25]


@pytest.mark.parametrize("schedule", [R.Cosine(-10.0, 10.0), R.DDPMLinear(), R.LinearLogSNR(-8.0, 12.0)], ids=type)
def test_vdm_continuous_loss_integrates_to_half_elbo_integral(example, schedule):
    """∫_0^1 ½(−λ')ℓ(λ_t) dt (quad in t) = ½∫ℓ dλ (quad in λ, the ELBO weighting): 1e-9."""
    x, eps = example
    in_t, _ = integrate.quad(
        lambda t: R.vdm_continuous_loss(MLP, x, t, eps, schedule), 0.0, 1.0, epsabs=0, epsrel=1e-12, limit=400
    )
    in_logsnr = R.weighted_loss_integral(MLP, x, R.ELBO(), schedule, eps[None])
    assert in_t == pytest.approx(in_logsnr, rel=1e-9)


@pytest.mark.parametrize("weighting", [R.Sigmoid(2.0), R.EDM()], ids=type)
@pytest.mark.parametrize("proposal", [R.Cosine(-10.0, 10.0), R.LinearLogSNR(-10.0, 10.0)], ids=type)
def test_weighted_loss_is_unbiased_for_any_proposal(example, weighting, proposal):
    """Mean of ½ w/p ℓ over λ ~ p and a uniformly chosen fixed draw equals L_w: 5-sigma CI."""
    x, _ = example
    rng = np.random.default_rng(11)
    eps = rng.standard_normal((2, DIM))
    n = 8000
    lam = proposal.logsnr(rng.uniform(size=n))
    which = rng.integers(0, 2, size=n)
    samples = np.array(
        [
            R.weighted_loss(MLP, x, lam_i, eps[k], weighting, proposal.density(lam_i))
            for lam_i, k in zip(lam, which, strict=True)
        ]
    )
    expected = R.weighted_loss_integral(MLP, x, weighting, proposal, eps)
    stderr = samples.std(ddof=1) / math.sqrt(n)
    assert abs(samples.mean() - expected) < 5 * stderr
    assert stderr < 0.05 * expected  # the check has power


# --- VDM discrete loss -----------------------------------------------------------------------


def _posterior_step_kl(x, eps, schedule, num_steps, i):
    """KL(q(z_s|z_t,x) || p(z_s|z_t)) of VDM step i, from posterior means and variances.

    q(z_s|z_t,x) = N(μ(z_t, x), c I), p(z_s|z_t) = q(z_s|z_t, x̂), x̂ = (z_t − σ_t ε̂)/α_t, with
    α_{t|s} = α_t/α_s, σ²_{t|s} = σ_t² − α²_{t|s} σ_s², μ = (α_{t|s}σ_s²/σ_t²) z_t + (α_s σ²_{t|s}/σ_t²) x,
    c = σ²_{t|s} σ_s²/σ_t².
    """
    lam_t = float(schedule.logsnr(i / num_steps))
    lam_s = float(schedule.logsnr((i - 1) / num_steps))
    a_t, s_t = _alpha_sigma(lam_t)
    a_s, s_s = _alpha_sigma(lam_s)
    z_t = a_t * x + s_t * eps
    x_hat = (z_t - s_t * MLP(z_t, lam_t)) / a_t
    a_ts = a_t / a_s
    var_ts = s_t**2 - a_ts**2 * s_s**2
    mean_q = a_ts * s_s**2 / s_t**2 * z_t + a_s * var_ts / s_t**2 * x
    mean_p = a_ts * s_s**2 / s_t**2 * z_t + a_s * var_ts / s_t**2 * x_hat
    cov = var_ts * s_s**2 / s_t**2 * np.eye(x.size)
    return _gaussian_kl(mean_q, cov, mean_p, cov)


@pytest.mark.parametrize("schedule", [R.Cosine(-10.0, 10.0), R.LinearLogSNR(-6.0, 8.0)], ids=type)
def test_vdm_discrete_loss_is_sum_of_step_kls(example, schedule):
    """E_{i~U{1..T}} of ½T expm1(λ_s − λ_t)ℓ(λ_t) = Σ_i KL_i (generic Gaussian KL): 1e-10."""
    x, eps = example
    num_steps = 10
    terms = [R.vdm_discrete_loss(MLP, x, i, eps, schedule, num_steps) for i in range(1, num_steps + 1)]
    kls = [_posterior_step_kl(x, eps, schedule, num_steps, i) for i in range(1, num_steps + 1)]
    assert np.mean(terms) == pytest.approx(math.fsum(kls), rel=1e-10)
    # Each step's term is T times its own KL.
    np.testing.assert_allclose(np.array(terms) / num_steps, kls, rtol=1e-9)


@pytest.mark.parametrize(
    "schedule, steps",
    [(R.LinearLogSNR(-10.0, 10.0), (100, 1000, 10000)), (R.Cosine(-10.0, 10.0), (1000, 10000))],
    ids=["LinearLogSNR", "Cosine"],
)
def test_vdm_discrete_loss_converges_to_continuous_at_rate_one_over_T(example, schedule, steps):
    """|L_T − L_∞| falls like 1/T for fixed noise (L_∞ = ½∫ℓ dλ by quad): ratio ≈ 10 per decade.

    The first-order error is the Riemann sum's plus expm1(Δ) ≈ Δ(1 + Δ/2); Cosine's large
    steps at the ends (Δ ≈ 5 at T = 10) reach the asymptotic regime only from T ≈ 1000.
    """
    x, eps = example
    continuous = R.weighted_loss_integral(MLP, x, R.ELBO(), schedule, eps[None])
    errors = []
    for num_steps in steps:
        terms = [R.vdm_discrete_loss(MLP, x, i, eps, schedule, num_steps) for i in range(1, num_steps + 1)]
        errors.append(abs(np.mean(terms) - continuous))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 9.0) & (ratios < 12.0)), (errors, ratios)
    assert errors[-1] < 1e-2 * continuous


# --- prior KL, reconstruction, bits per dim --------------------------------------------------


@pytest.mark.parametrize("lam", [-8.0, -2.0, 0.0, 4.0, 20.0])
def test_prior_kl_matches_generic_gaussian_kl(example, lam):
    x, _ = example
    alpha, sigma = _alpha_sigma(lam)
    expected = _gaussian_kl(alpha * x, sigma**2 * np.eye(DIM), np.zeros(DIM), np.eye(DIM))
    assert R.prior_kl(x, lam) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("lam", [-50.0, -30.0, -15.0])
def test_prior_kl_keeps_relative_precision_at_low_logsnr(lam):
    """For a = α² ≪ 1 the exact KL is ½Σ(a x² + Σ_k a^k/k); a fourth-order sum is exact to 1e-15."""
    x = np.array([0.0, 1e-3, 0.5])
    a = 1.0 / (1.0 + math.exp(-lam))
    gap = a**2 / 2 + a**3 / 3 + a**4 / 4
    expected = 0.5 * sum(a * xi**2 + gap for xi in x)
    assert R.prior_kl(x, lam) == pytest.approx(expected, rel=1e-13)
    assert R.prior_kl(np.zeros(2), lam) == pytest.approx(gap, rel=1e-13)


def test_prior_kl_at_high_logsnr_uses_plain_formula():
    """λ = 50: σ² = e^{-50}/(1+e^{-50}) has no cancellation in the textbook expression."""
    x = np.array([0.3, -1.2])
    alpha, sigma = _alpha_sigma(50.0)
    expected = 0.5 * np.sum(alpha**2 * x**2 + sigma**2 - math.log(sigma**2) - 1.0)
    assert R.prior_kl(x, 50.0) == pytest.approx(expected, rel=1e-14)


def test_levels_to_unit_are_bin_centres():
    levels = np.arange(256)
    unit = R.levels_to_unit(levels)
    np.testing.assert_allclose(
        unit[[0, 127, 128, 255]], [-1 + 1 / 256, -1 / 256, 1 / 256, 1 - 1 / 256], rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(np.diff(unit), 2 / 256, rtol=1e-12)


@pytest.mark.parametrize("lam", [2.0, 8.0, 12.0])
@pytest.mark.parametrize("vocab_size", [2, 16, 256])
def test_reconstruction_matches_discretised_gaussian_and_normalises(lam, vocab_size):
    """p(x=k|z₀) ∝ N(z₀/α₀; c_k, e^{-λ}) (scipy.stats.norm); Σ_k p(k|z₀) = 1 for a fixed z₀."""
    rng = np.random.default_rng(3)
    alpha, sigma = _alpha_sigma(lam)
    z0 = rng.uniform(-1.0, 1.0)  # one dimension, fixed
    centres = (2.0 * (np.arange(vocab_size) + 0.5)) / vocab_size - 1.0
    log_lik = stats.norm.logpdf(z0 / alpha, loc=centres, scale=math.exp(-lam / 2))
    expected = -(log_lik - special.logsumexp(log_lik))
    # Level k with the noise that lands on the same z₀: ε_k = (z₀ − α c_k)/σ.
    nll = np.array(
        [
            R.reconstruction_nll(np.array([k]), lam, np.array([(z0 - alpha * c) / sigma]), vocab_size)
            for k, c in enumerate(centres)
        ]
    )
    np.testing.assert_allclose(nll, expected, rtol=1e-9, atol=1e-12)
    assert math.fsum(np.exp(-nll)) == pytest.approx(1.0, abs=1e-12)


def test_reconstruction_vanishes_at_high_logsnr_and_is_uniform_at_low():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(4, 4, 3))
    eps = rng.standard_normal(x.shape)
    nlls = [R.reconstruction_nll(x, lam, eps) for lam in (6.0, 10.0, 14.0, 20.0)]
    assert np.all(np.diff(nlls) < 0)
    assert nlls[-1] < 1e-12  # neighbours are e^{20}(2/256)²/2 ≈ 1.5e4 nats less likely
    # λ → −∞: every bin equally likely, NLL → D ln V. Logits −½(e^{λ/2}(f − c_k) + ε)² spread by
    # at most s = 2e^{λ/2}|ε| + 2e^{λ} per dimension, and a log-softmax moves by at most 2s.
    lam = -30.0
    bound = np.sum(2 * (2 * math.exp(lam / 2) * np.abs(eps) + 2 * math.exp(lam)))
    uniform = x.size * math.log(256)
    assert abs(R.reconstruction_nll(x, lam, eps) - uniform) <= bound
    assert bound < 1e-6 * uniform


def test_bits_per_dim_arithmetic():
    recon, prior, diffusion, dims = 12.5, 0.25, 1000.0, 3072
    expected = (recon + prior + diffusion) * math.log2(math.e) / dims
    assert R.bits_per_dim(recon, prior, diffusion, dims) == pytest.approx(expected, rel=1e-15)


# --- bad inputs (both packages raise ValueError before computing) ---------------------------

PACKAGES = pytest.mark.parametrize("pkg", [R, E], ids=["reference", "eqx"])


@PACKAGES
def test_mismatched_shapes_name_both(pkg):
    x, eps = np.zeros((2, 3)), np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        pkg.eps_loss(lambda z, _: z, x, 0.0, eps)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        pkg.reconstruction_nll(np.zeros((2, 3), dtype=int), 10.0, eps)


@PACKAGES
@pytest.mark.parametrize("num_steps", [0, -3])
def test_num_steps_below_one(pkg, num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        pkg.vdm_discrete_loss(lambda z, _: z, np.zeros(2), 1, np.zeros(2), pkg.Cosine(), num_steps)


@PACKAGES
@pytest.mark.parametrize("i", [0, 11])
def test_step_out_of_range(pkg, i):
    with pytest.raises(ValueError, match=f"i={i}.*num_steps=10"):
        pkg.vdm_discrete_loss(lambda z, _: z, np.zeros(2), i, np.zeros(2), pkg.Cosine(), 10)


@PACKAGES
def test_vocab_size_below_two(pkg):
    with pytest.raises(ValueError, match="vocab_size"):
        pkg.levels_to_unit(np.zeros(3), vocab_size=1)
    with pytest.raises(ValueError, match="vocab_size"):
        pkg.reconstruction_nll(np.zeros(3, dtype=int), 10.0, np.zeros(3), vocab_size=1)


def test_step_out_of_range_traced_eqx():
    """Under jit the step is a tracer: `eqx.error_if` raises at run time with the same message."""
    loss = eqx.filter_jit(lambda i: E.vdm_discrete_loss(lambda z, _: z, jnp.zeros(2), i, jnp.zeros(2), E.Cosine(), 10))
    assert float(loss(jnp.int32(10))) >= 0.0
    with pytest.raises(RuntimeError, match="out of range for num_steps=10"):
        loss(jnp.int32(0))
