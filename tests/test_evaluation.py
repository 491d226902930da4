"""Evaluation (`eqx_impl.evaluation`): likelihood bounds, sampling, grids, metrics, GMM and
Fréchet distance, checked against independent computations.

- Negative ELBO terms: against the SPEC §3 formulas written out in float64 NumPy (same
  noise, float32 vs float64: relative tolerance 1e-4).
- Estimator means: against closed forms (Gaussian data with its Bayes-optimal ε̂:
  $\\mathbb E\\ell = d\\,\\mathrm{sigmoid}(\\lambda + \\ln s^2)$; discrete data on K patterns:
  the bound equals $\\ln K$ up to negligible terms), within 4 standard errors.
- Samplers: the Gaussian probability-flow ODE is solved exactly by
  $x = s\\,\\xi$ when started at $\\sqrt{\\sigma_{\\max}^2 + s^2}\\,\\xi$.
- Metrics: scipy's 1-D Wasserstein distance, the closed-form Gaussian $W_2$, a direct
  $O(n^2)$ NumPy MMD, scipy's matrix square root, closed-form Fréchet distances.
"""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from scipy import linalg, special, stats

import eqx_impl as E
from eqx_impl import data
from eqx_impl import evaluation as ev
from tests.nets import init_params, jax_mlp, numpy_mlp

KEY = jax.random.key(0)


# --- negative ELBO / bits per dimension -------------------------------------------------------


def cosine_np(t, lmin, lmax):
    """Cosine schedule λ(t) and dλ/dt in float64 (SPEC §1, shift 0)."""
    a, b = math.atan(math.exp(-lmax / 2)), math.atan(math.exp(-lmin / 2))
    u = a + t * (b - a)
    return -2.0 * np.log(np.tan(u)), -2.0 * (b - a) / (np.sin(u) * np.cos(u))


def terms_np(model, levels, t, eps, eps_recon, lmin, lmax, vocab):
    """SPEC §3 written out: recon by explicit logits over bin centres, prior by the KL
    formula, diffusion = mean over t of ½(−dλ/dt)‖ε − ε̂(αf + σε; λ)‖²."""
    f = 2.0 * (levels + 0.5) / vocab - 1.0
    centres = 2.0 * (np.arange(vocab) + 0.5) / vocab - 1.0
    a0, s0 = math.sqrt(special.expit(lmax)), math.sqrt(special.expit(-lmax))
    z0_tilde = (a0 * f + s0 * eps_recon) / a0
    logits = -0.5 * math.exp(lmax) * (z0_tilde[:, None] - centres) ** 2
    log_probs = logits - special.logsumexp(logits, axis=1, keepdims=True)
    recon = -np.sum(log_probs[np.arange(len(f)), levels.astype(int)])
    a1, s1 = special.expit(lmin), special.expit(-lmin)  # α₁², σ₁²
    prior = 0.5 * np.sum(a1 * f**2 + s1 - np.log(s1) - 1.0)
    diffusion = []
    for t_k, eps_k in zip(t, eps, strict=True):
        lam, slope = cosine_np(t_k, lmin, lmax)
        z = math.sqrt(special.expit(lam)) * f + math.sqrt(special.expit(-lam)) * eps_k
        diffusion.append(0.5 * -slope * np.sum((eps_k - model(z, lam)) ** 2))
    return recon, prior, np.mean(diffusion)


def test_negative_elbo_terms_match_numpy():
    lmin, lmax, vocab = -8.0, 9.0, 5
    params = init_params(4, seed=3)
    rng = np.random.default_rng(0)
    levels = np.array([0.0, 2.0, 4.0, 1.0])
    t = np.array([0.03, 0.31, 0.58, 0.94])
    eps = rng.normal(size=(4, 4))
    eps_recon = rng.normal(size=4)
    expected = terms_np(numpy_mlp(params), levels, t, eps, eps_recon, lmin, lmax, vocab)
    got = eqx.filter_jit(ev.negative_elbo_terms)(
        jax_mlp(params),
        jnp.asarray(levels, jnp.float32),
        jnp.asarray(t, jnp.float32),
        jnp.asarray(eps, jnp.float32),
        jnp.asarray(eps_recon, jnp.float32),
        E.Cosine(lmin, lmax),
        vocab,
    )
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=1e-4)


def test_negative_elbo_terms_continuous_decoder():
    """Continuous data: recon is the exact constant (D/2)(1 + ln 2π − λ_max)."""
    lmin, lmax = -8.0, 9.0
    params = init_params(3, seed=1)
    x = np.array([0.3, -1.2, 0.7])
    t, eps = np.array([0.2, 0.7]), np.random.default_rng(1).normal(size=(2, 3))
    recon, prior, diffusion = eqx.filter_jit(ev.negative_elbo_terms)(
        jax_mlp(params), jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32),
        jnp.asarray(eps, jnp.float32), None, E.Cosine(lmin, lmax),
    )  # fmt: skip
    a1, s1 = special.expit(lmin), special.expit(-lmin)
    np.testing.assert_allclose(float(recon), 1.5 * (1 + math.log(2 * math.pi) - lmax), rtol=1e-6)
    np.testing.assert_allclose(float(prior), 0.5 * np.sum(a1 * x**2 + s1 - np.log(s1) - 1.0), rtol=1e-4)
    model = numpy_mlp(params)
    diff = []
    for t_k, e in zip(t, eps, strict=True):
        lam, slope = cosine_np(t_k, lmin, lmax)
        z = math.sqrt(special.expit(lam)) * x + math.sqrt(special.expit(-lam)) * e
        diff.append(0.5 * -slope * np.sum((e - model(z, lam)) ** 2))
    np.testing.assert_allclose(float(diffusion), np.mean(diff), rtol=1e-4)


def test_negative_elbo_follows_documented_keys_and_ignores_batch_size():
    """Example i uses fold_in(key, i) split into (u, ε, ε_recon); padding of the last batch
    and the batch size change nothing; the estimate is mean ± std/√n of the per-example values."""
    params = init_params(4, seed=2)
    model, schedule = jax_mlp(params), E.Cosine(-6.0, 7.0)
    levels = np.random.default_rng(4).integers(0, 5, size=(7, 2, 2)).astype(np.float32)
    small = ev.negative_elbo(model, levels, key=KEY, schedule=schedule, num_levels=5, num_t=3, batch_size=3)

    @jax.jit
    @jax.vmap
    def documented(x, i):  # per example, with no batching at all
        key_t, key_eps, key_recon = jax.random.split(jax.random.fold_in(KEY, i), 3)
        t = ev.stratified_times(jax.random.uniform(key_t, ()), 3)
        eps = jax.random.normal(key_eps, (3, 2, 2))
        return sum(ev.negative_elbo_terms(model, x, t, eps, jax.random.normal(key_recon, (2, 2)), schedule, 5))

    np.testing.assert_allclose(small.per_example, documented(levels, jnp.arange(7)), rtol=1e-5)
    values = small.per_example
    assert small.nats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert small.nats.stderr == pytest.approx(values.std(ddof=1) / math.sqrt(7), rel=1e-12)
    assert small.bpd.mean == pytest.approx(values.mean() / (4 * math.log(2)), rel=1e-6)
    assert small.recon + small.prior + small.diffusion == pytest.approx(values.mean(), rel=1e-6)
    assert set(small.to_dict()) >= {"bpd", "bpd_stderr", "recon_bpd", "prior_bpd", "diffusion_bpd"}


def test_stratified_times_are_uniform_and_one_per_stratum():
    u = jax.random.uniform(KEY, (4000,))
    t = np.asarray(jax.vmap(lambda u: ev.stratified_times(u, 4))(u))
    for k in range(4):  # each t_k is U(0, 1): the estimator's mean over k is unbiased
        assert stats.kstest(t[:, k], "uniform").pvalue > 0.01
    strata = np.sort(np.floor(t * 4), axis=1)
    np.testing.assert_array_equal(strata, np.tile(np.arange(4.0), (4000, 1)))


def test_bpd_of_discrete_data_equals_entropy_with_bayes_denoiser():
    """Levels uniform on K = 4 patterns in D = 2 dimensions, V = 17 levels; the ε-model is the
    Bayes denoiser of (nearly) point masses at the patterns' bin centres. The bound then equals
    I(x; z₀) − I(x; z₁) + recon + prior ≈ H(x) = ln 4, i.e. exactly 1 bit per dimension (the
    other terms are < 1e-4 bits here)."""
    vocab, patterns = 17, np.array([[2, 5], [8, 8], [14, 3], [5, 12]])
    levels = patterns[np.random.default_rng(0).integers(0, 4, size=1500)].astype(np.float32)
    centres = jnp.asarray(2 * (patterns + 0.5) / vocab - 1, jnp.float32)
    mixture = E.GaussianMixture(jnp.full((4,), 0.25), centres, jnp.full((4,), 1e-4))
    result = ev.negative_elbo(
        mixture.eps, levels, key=KEY, schedule=E.LinearLogSNR(-10.0, 10.0), num_levels=vocab, num_t=16
    )
    assert abs(result.bpd.mean - 1.0) < 4 * result.bpd.stderr
    assert result.bpd.stderr < 0.03
    assert result.recon < 1e-4 and 0 < result.prior < 1e-3


def test_gaussian_negative_elbo_matches_closed_form():
    """x ~ N(0, s² I_d) with its Bayes-optimal ε̂ (continuous decoder):
    E[bound] = (d/2)(1 + ln 2π − λmax) + E KL_prior + (d/2)[softplus(λmax + ln s²) − softplus(λmin + ln s²)],
    which is also ≈ the exact NLL (d/2)(1 + ln 2πs²). Stratified estimates are unbiased for
    any num_t; more strata give a smaller standard error."""
    d, s2, lmin, lmax = 3, 0.5, -10.0, 10.0
    gauss = E.GaussianData(s2, d)
    x = np.asarray(gauss.sample(3000, key=jax.random.key(1)))
    prior = 0.5 * d * (special.expit(lmin) * s2 + np.logaddexp(0, lmin) - special.expit(lmin))
    diffusion = 0.5 * d * (np.logaddexp(0, lmax + math.log(s2)) - np.logaddexp(0, lmin + math.log(s2)))
    recon = 0.5 * d * (1 + math.log(2 * math.pi) - lmax)
    expected = recon + prior + diffusion
    assert expected == pytest.approx(0.5 * d * (1 + math.log(2 * math.pi * s2)), abs=2e-4)
    # the sample mean of ‖x‖² enters the prior term: compare with the same x
    prior_sample = 0.5 * special.expit(lmin) * (np.mean(np.sum(x**2, 1)) - d * s2)
    stderr = {}
    for num_t in (1, 8):
        result = ev.negative_elbo(gauss.eps, x, key=KEY, schedule=E.LinearLogSNR(lmin, lmax), num_t=num_t)
        assert abs(result.nats.mean - expected - prior_sample) < 4 * result.nats.stderr
        assert result.diffusion == pytest.approx(diffusion, abs=4 * result.nats.stderr)
        stderr[num_t] = result.nats.stderr
    assert stderr[8] < 0.5 * stderr[1]


def test_gmm_negative_elbo_bounds_exact_nll():
    """For held-out GMM data and the mixture's Bayes-optimal ε̂, the continuous-time bound
    exceeds the exact −ln p(x) only by KL(q(z₁)‖N(0, I)) and the smoothing at λmax (< 0.01
    nats here); compared per example (paired), within 4 standard errors (about 0.1 nats)."""
    dataset = data.load("gmm", num_train=10, num_test=1000)
    mixture, x = ev.mixture_from_dataset(dataset), np.asarray(dataset.test)
    result = ev.negative_elbo(mixture.eps, x, key=KEY, schedule=E.LinearLogSNR(-12.0, 12.0), num_t=16)
    nll = -np.asarray(mixture.log_prob(jnp.asarray(x)), np.float64)
    gap = ev.estimate(result.per_example - nll)
    assert -4 * gap.stderr < gap.mean < 0.01 + 4 * gap.stderr
    assert gap.stderr < 0.15
    assert ev.exact_nll(mixture, x).mean == pytest.approx(nll.mean(), rel=1e-6)


def test_dataset_bpd_uses_levels_and_limit():
    ds = data.load("digits")
    model = lambda z, logsnr: jnp.zeros_like(z)  # noqa: E731 - predicts ε̂ = 0
    result = ev.dataset_bpd(model, ds, key=KEY, schedule=E.Cosine(-10.0, 10.0), limit=16, num_t=2)
    direct = ev.negative_elbo(model, ds.test[:16], key=KEY, schedule=E.Cosine(-10.0, 10.0), num_levels=17, num_t=2)
    np.testing.assert_array_equal(result.per_example, direct.per_example)
    assert result.num_dims == 64
    with pytest.raises(ValueError, match="integer levels"):
        ev.negative_elbo(model, ds.model_data("test")[:4], key=KEY, schedule=E.Cosine(), num_levels=17)


# --- generation --------------------------------------------------------------------------------


def initial_noise(key, num, shape):
    keys = jax.random.split(key, num)
    return np.asarray(jax.vmap(lambda k: jax.random.normal(jax.random.split(k)[0], shape))(keys))


@pytest.mark.parametrize(("sampler", "tol"), [("heun", 1e-3), ("euler", 0.02), ("ddim", 0.02)])
def test_deterministic_samplers_solve_gaussian_flow(sampler, tol):
    """Started at √(σ_max² + s²)·ξ with the exact ε̂, the probability-flow ODE ends at s·ξ;
    with 256 steps Heun (2nd order) is within 0.1 %, Euler and DDIM (1st order) within 2 %."""
    s2 = 0.5
    gauss = E.GaussianData(s2, 2)
    x = ev.generate(gauss.eps, 64, (2,), key=KEY, sampler=sampler, steps=256, sigma_data=math.sqrt(s2))
    expected = math.sqrt(s2) * initial_noise(KEY, 64, (2,))
    np.testing.assert_allclose(x, expected, atol=tol * math.sqrt(s2) * np.abs(expected).max())


@pytest.mark.parametrize("sampler", ["stochastic", "ancestral"])
def test_stochastic_samplers_have_the_data_distribution(sampler):
    """Samples of N(0, s² I) with its Bayes ε̂ and 1024 steps: mean and variance within 4
    standard errors plus 1 % (discretisation, and EDM's S_noise = 1.003 inflating the noise)."""
    s2, n = 0.5, 4000
    gauss = E.GaussianData(s2, 2)
    x = ev.generate(gauss.eps, n, (2,), key=KEY, sampler=sampler, steps=1024, batch_size=n)
    assert np.all(np.abs(x.mean(0)) < 4 * math.sqrt(s2 / n))
    assert np.all(np.abs(x.var(0) / s2 - 1) < 4 * math.sqrt(2 / n) + 0.01)


def test_generate_matches_direct_sampler_calls_and_batching():
    params = init_params(4, seed=5)
    model = jax_mlp(params)
    x = ev.generate(model, 5, (2, 2), key=KEY, sampler="stochastic", steps=6, batch_size=2)
    sigmas = E.edm_sigmas(6)

    @jax.jit
    @jax.vmap
    def direct_heun(key):  # per example, no batching: also shows batch_size changes nothing
        key_init, key_noise = jax.random.split(key)
        x0 = 80.0 * jax.random.normal(key_init, (2, 2))
        denoiser = E.denoiser_from_eps(model)
        return E.heun_sampler(denoiser, x0, sigmas, S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.003, key=key_noise)

    np.testing.assert_allclose(x, direct_heun(jax.random.split(KEY, 5)), rtol=1e-5, atol=1e-6)
    # VP samplers: the steps follow the schedule, and the result is the final denoised x̂
    schedule = E.Cosine(-9.0, 9.0)
    logsnrs = ev.sampler_steps("ddim", 4, schedule=schedule)
    np.testing.assert_allclose(logsnrs, schedule.logsnr(1.0 - jnp.arange(5) / 4), rtol=1e-6)
    y = ev.generate(model, 2, (2, 2), key=KEY, sampler="ddim", steps=4, schedule=schedule)

    @jax.jit
    def direct_ddim(key):
        _, s0 = E.alpha_sigma(logsnrs[0])
        z = E.ddim_sampler(model, s0 * jax.random.normal(jax.random.split(key)[0], (2, 2)), logsnrs)
        a, s = E.alpha_sigma(logsnrs[-1])
        return (z - s * model(z, logsnrs[-1])) / a

    np.testing.assert_allclose(y[1], direct_ddim(jax.random.split(KEY, 2)[1]), rtol=1e-5, atol=1e-6)


def test_sampler_steps_default_vp_levels_are_edm_levels():
    np.testing.assert_allclose(
        ev.sampler_steps("ancestral", 10), -2 * np.log(np.asarray(E.edm_sigmas(11))[:-1]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="unknown sampler"):
        ev.generate(lambda z, lam: z, 2, (2,), key=KEY, sampler="rk4")


def test_to_levels_inverts_levels_to_unit():
    levels = np.arange(17).reshape(1, 17)
    unit = np.asarray(E.levels_to_unit(levels, 17))
    np.testing.assert_array_equal(ev.to_levels(unit, 17), levels)
    np.testing.assert_array_equal(ev.to_levels(np.array([-3.0, 3.0]), 17), [0, 16])


# --- grids ---------------------------------------------------------------------------------


def test_image_grid_places_tiles():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(5, 1, 2, 3))
    grid = ev.image_grid(images, nrow=3, padding=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    np.testing.assert_allclose(grid[4:6, 5:8, 0], (images[4, 0] + 1) / 2)  # row 1, column 1
    assert np.all(grid[4:6, 9:12] == 1.0)  # unused cell
    levels = ev.image_grid(images, nrow=3, num_levels=3)
    assert set(np.unique(levels)) <= {0.0, 0.5, 1.0}


def test_save_grid_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(4, 1, 8, 8)).astype(np.float32)
    path = ev.save_grid(images, tmp_path / "sub" / "grid.png", scale=2, nrow=2)
    assert path == tmp_path / "sub" / "grid.png"
    png = np.round(255 * matplotlib.image.imread(path)[..., :3])  # exact 8-bit values
    expected = np.repeat(np.repeat(ev.image_grid(images, nrow=2)[..., 0], 2, 0), 2, 1)
    assert png.shape[:2] == expected.shape
    for channel in range(3):
        np.testing.assert_array_equal(png[..., channel], np.round(255 * expected))
    scatter = ev.save_grid(rng.normal(size=(100, 2)), tmp_path / "s.png", reference=rng.normal(size=(50, 2)))
    assert scatter.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


# --- two-sample metrics --------------------------------------------------------------------------


def test_sliced_wasserstein_1d_is_exact():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 1)), rng.gamma(2.0, size=(300, 1))
    w1 = ev.sliced_wasserstein(x, y, key=KEY, num_projections=8, p=1)
    assert w1 == pytest.approx(stats.wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-5)
    w2 = ev.sliced_wasserstein(x, y, key=KEY, num_projections=8, p=2)
    assert w2 == pytest.approx(np.sqrt(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2)), rel=1e-5)


def test_sliced_wasserstein_gaussian_shift_closed_form():
    """W₂(N(μ₁, s²), N(μ₂, s²)) = |μ₁ − μ₂|: the empirical distance of 20 000 draws agrees to 0.02."""
    x = jax.random.normal(jax.random.key(1), (20_000, 1))
    y = 0.7 + jax.random.normal(jax.random.key(2), (20_000, 1))
    assert ev.sliced_wasserstein(x, y, key=KEY, num_projections=4) == pytest.approx(0.7, abs=0.02)


def test_sliced_wasserstein_and_mmd_detect_shift_only():
    """Same distribution: both statistics are within the permutation null; a shift of 0.5 (half
    a standard deviation) is far outside it."""
    params = data.gmm_params()
    mixture = E.GaussianMixture(*(jnp.asarray(params[k], jnp.float32) for k in ("weights", "means", "stds")))
    x, y = mixture.sample(800, key=jax.random.key(1)), mixture.sample(800, key=jax.random.key(2))
    shifted = y + jnp.asarray([0.5, 0.0])
    hs = (0.25, 0.5, 1.0)
    for statistic in (
        lambda a, b: ev.sliced_wasserstein(a, b, key=KEY, num_projections=64),
        lambda a, b: ev.mmd2(a, b, bandwidths=hs),
    ):
        same = ev.permutation_test(statistic, x, y, key=KEY, num_permutations=25)
        assert same.p_value > 0.05
        assert abs(same.statistic - same.null_mean) < 3 * same.null_std
        diff = ev.permutation_test(statistic, x, shifted, key=KEY, num_permutations=25)
        assert diff.p_value == pytest.approx(1 / 26)
        assert diff.statistic > diff.null_mean + 5 * diff.null_std
    assert abs(ev.mmd2(x, y, bandwidths=hs)) < 0.2 * ev.mmd2(x, shifted, bandwidths=hs)


def test_mmd2_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(150, 3)), rng.normal(0.2, 1.1, size=(120, 3))
    hs = np.array([0.5, 1.0, 2.0])

    def gram(a, b):
        sq = np.sum((a[:, None] - b[None]) ** 2, axis=-1)
        return np.sum(np.exp(-sq[..., None] / (2 * hs**2)), axis=-1)

    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    n, m = len(x), len(y)
    expected = (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    )
    got = ev.mmd2(x.astype(np.float32), y.astype(np.float32), bandwidths=hs, block_size=64)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
    h = ev.median_bandwidth(x, y)
    pooled = np.concatenate([x, y])
    assert h == pytest.approx(np.median(np.sqrt(np.sum((pooled[:, None] - pooled) ** 2, -1))[np.triu_indices(270, 1)]))


# --- GMM: exact NLL and Bayes gap ------------------------------------------------------------


def test_exact_nll_matches_scipy():
    params = data.gmm_params(5)
    mixture = E.GaussianMixture(*(jnp.asarray(params[k], jnp.float32) for k in ("weights", "means", "stds")))
    x = np.random.default_rng(0).normal(size=(50, 2))
    density = sum(
        w * stats.multivariate_normal(m, s**2).pdf(x)
        for w, m, s in zip(params["weights"], params["means"], params["stds"], strict=True)
    )
    result = ev.exact_nll(mixture, x, batch_size=16)
    assert result.mean == pytest.approx(-np.log(density).mean(), rel=1e-5)
    assert result.stderr == pytest.approx(np.log(density).std(ddof=1) / math.sqrt(50), rel=1e-4)


def test_bayes_gap_is_zero_for_the_bayes_model_and_positive_otherwise():
    mixture = ev.mixture_from_dataset(data.load("gmm", num_train=10, num_test=10))
    x = mixture.sample(1000, key=jax.random.key(3))
    kwargs = dict(key=KEY, weighting=E.Sigmoid(2.0), schedule=E.Cosine(-10.0, 10.0), num_t=4)
    exact = ev.bayes_gap(mixture.eps, mixture, x, **kwargs)
    assert exact.gap == (0.0, 0.0)
    assert exact.relative == (0.0, 0.0)
    assert exact.model == exact.optimal
    worse = ev.bayes_gap(lambda z, lam: 0.9 * mixture.eps(z, lam), mixture, x, **kwargs)
    assert worse.gap.mean > 10 * worse.gap.stderr
    assert worse.relative.mean == pytest.approx(worse.gap.mean / worse.optimal.mean, rel=1e-9)
    assert worse.optimal == exact.optimal  # common random numbers: the same x, λ, ε
    assert worse.gap.stderr < 0.5 * worse.model.stderr


def test_bayes_gap_optimal_loss_matches_quadrature():
    """One-component mixture = Gaussian data: E ℓ* = d·sigmoid(λ + ln s²), so the optimal
    weighted loss is ½∫ w(λ) d sigmoid(λ + ln s²) dλ (quadrature)."""
    from scipy import integrate

    s, d, lmin, lmax = 0.6, 2, -10.0, 10.0
    mixture = E.GaussianMixture(jnp.ones(1), jnp.zeros((1, d)), jnp.full((1,), s))
    x = mixture.sample(4000, key=jax.random.key(4))
    weighting = E.EpsCosine()
    result = ev.bayes_gap(
        mixture.eps, mixture, x, key=KEY, weighting=weighting, schedule=E.LinearLogSNR(lmin, lmax), num_t=4
    )
    integrand = lambda lam: d * special.expit(lam + 2 * math.log(s)) / np.cosh(lam / 2)  # noqa: E731
    expected = 0.5 * integrate.quad(integrand, lmin, lmax)[0]
    assert abs(result.optimal.mean - expected) < 4 * result.optimal.stderr


# --- Fréchet distance ------------------------------------------------------------------------------


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    a, b = rng.uniform(0.1, 2, size=4), rng.uniform(0.1, 2, size=4)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert ev.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # full covariances: against scipy's (non-symmetric) matrix square root
    g1, g2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = g1 @ g1.T, g2 @ g2.T
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    root = linalg.sqrtm(c1 @ c2).real
    expected = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * root)
    assert ev.frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-9)
    # identical, singular covariances: 0 up to the square root of rounding (√1e-16 · scale)
    low_rank = g1[:, :2] @ g1[:, :2].T
    assert abs(ev.frechet_distance(m1, low_rank, m1, low_rank)) < 1e-6


FAST = ev.ClassifierConfig(hidden=(128, 32), steps=400)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def fast_classifier(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ev.load_classifier(FAST, cache_dir=cache), cache


def test_classifier_is_accurate_deterministic_and_cached(fast_classifier, digits, monkeypatch):
    classifier, cache = fast_classifier
    assert ev.classifier_accuracy(classifier, digits.model_data("test"), digits.test_labels) > 0.9
    path = ev.classifier_path(FAST, cache)
    assert path.exists() and path.parent.name == "classifiers"
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["config"]["steps"] == 400 and metadata["test_accuracy"] > 0.9
    # the cached weights are reused (training would fail here) and identical
    monkeypatch.setattr(ev.frechet, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    loaded = ev.load_classifier(FAST, cache_dir=cache)
    assert bool(eqx.tree_equal(loaded, classifier))
    monkeypatch.undo()
    # a second training run from scratch gives bit-identical weights
    assert bool(eqx.tree_equal(ev.train_classifier(FAST), classifier))
    assert ev.ClassifierConfig(steps=401).digest() != FAST.digest()


def test_classifier_cache_recovers_from_a_corrupt_file(tmp_path):
    config = FAST
    path = ev.classifier_path(config, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an equinox file")
    with pytest.warns(UserWarning, match="unreadable classifier cache"):
        model = ev.load_classifier(config, cache_dir=tmp_path)
    assert bool(eqx.tree_equal(ev.load_classifier(config, cache_dir=tmp_path), model))


def test_frechet_classifier_distance_separates_data_from_noise(fast_classifier, digits):
    classifier, _ = fast_classifier
    test, train = digits.model_data("test"), digits.model_data("train")
    noise = np.random.default_rng(0).uniform(-1, 1, size=test.shape).astype(np.float32)
    fd_data = ev.frechet_classifier_distance(classifier, test, train)
    fd_noise = ev.frechet_classifier_distance(classifier, test, noise)
    assert fd_data < 0.02 * fd_noise
    mu, cov = ev.feature_statistics(classifier, test)
    feats = np.asarray(jax.vmap(classifier.features)(jnp.asarray(test)), np.float64)
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cov, np.cov(feats.T), rtol=1e-5, atol=1e-5)  # float32 features


@pytest.mark.slow
def test_default_classifier_accuracy_and_fd(tmp_path, digits):
    classifier = ev.load_classifier(cache_dir=tmp_path)
    assert ev.classifier_accuracy(classifier, digits.model_data("test"), digits.test_labels) > 0.95
    test, train = digits.model_data("test"), digits.model_data("train")
    noise = np.random.default_rng(0).uniform(-1, 1, size=test.shape).astype(np.float32)
    assert ev.frechet_classifier_distance(classifier, test, train) < 0.02 * ev.frechet_classifier_distance(
        classifier, test, noise
    )


def test_every_configured_metric_has_a_function():
    from eqx_impl.train import config as config_lib
    from eqx_impl.train import evaluate as evaluate_lib

    assert set(evaluate_lib.METRIC_FUNCTIONS) == set(config_lib.METRICS)
    assert evaluate_lib.NEEDS_SAMPLES <= set(config_lib.METRICS)
