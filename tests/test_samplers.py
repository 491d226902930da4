"""Samplers (reference, plus eqx call counting), SPEC §7.

Test data: Gaussian $x \\sim N(0, s^2)$, whose probability-flow ODE has the exact solution
$x(\\sigma) = x(\\sigma_{\\max})\\sqrt{s^2+\\sigma^2}/\\sqrt{s^2+\\sigma_{\\max}^2}$, and a 1-D two-component
Gaussian mixture with a closed-form Bayes denoiser written here (independent of
`reference.analytic`), whose ODE is integrated by `scipy.integrate.solve_ivp`.
Statistical checks use fixed seeds, 20 000 samples, and bounds of 4 standard errors or a
KS p-value above 0.01.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import eqx_impl as E
import reference as R
from _checks import SAMPLERS

S2 = 0.5  # Gaussian data variance
N_SAMPLES = 20_000
W, M, S = np.array([0.3, 0.7]), np.array([-1.0, 0.8]), np.array([0.4, 0.5])  # mixture
GMM_MEAN = np.sum(W * M)
GMM_VAR = np.sum(W * (S**2 + M**2)) - GMM_MEAN**2


def gauss_D(x, sigma):
    return S2 / (S2 + sigma**2) * x


def gmm_D(x, sigma):
    """$E[x \\mid x + \\sigma\\epsilon]$: responsibilities under $N(m_k, s_k^2+\\sigma^2)$ times the
    per-component posterior means $m_k + s_k^2 (x - m_k)/(s_k^2+\\sigma^2)$."""
    x = np.asarray(x)[..., None]
    v = S**2 + sigma**2
    r = special.softmax(np.log(W) - 0.5 * np.log(v) - 0.5 * (x - M) ** 2 / v, axis=-1)
    return np.sum(r * (M + S**2 / v * (x - M)), axis=-1)


def vp(logsnr):
    return np.sqrt(special.expit(logsnr)), np.sqrt(special.expit(-logsnr))


def eps_from_D(D):
    """ε-model in VP coordinates from an EDM denoiser: ε̂ = (x_edm − D(x_edm, σ))/σ, x_edm = z/α."""

    def eps_model(z, logsnr):
        alpha, _ = vp(logsnr)
        sigma = math.exp(-logsnr / 2)
        return (z / alpha - D(z / alpha, sigma)) / sigma

    return eps_model


def gmm_cdf_vp(z, logsnr):
    """CDF of $z = \\alpha x + \\sigma\\epsilon$ under the mixture ($\\alpha = 1$, $\\sigma = 0$: the data)."""
    alpha, sigma = vp(logsnr) if logsnr is not None else (1.0, 0.0)
    scale = np.sqrt(alpha**2 * S**2 + sigma**2)
    return np.sum(W * stats.norm.cdf((np.asarray(z)[..., None] - alpha * M) / scale), axis=-1)


def sample_gmm_vp(n, logsnr, rng):
    alpha, sigma = vp(logsnr)
    k = rng.choice(2, size=n, p=W)
    return alpha * (M[k] + S[k] * rng.standard_normal(n)) + sigma * rng.standard_normal(n)


def empirical_order(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


# --- EDM samplers: accuracy ------------------------------------------------------------------


def test_heun_gaussian_follows_exact_flow_and_reaches_data_std():
    rng = np.random.default_rng(0)
    sigma_max = 80.0
    x0 = sigma_max * rng.standard_normal(N_SAMPLES)
    out = R.heun_sampler(gauss_D, x0, R.edm_sigmas(64, sigma_max=sigma_max))
    exact = x0 * math.sqrt(S2) / math.sqrt(S2 + sigma_max**2)
    # Heun error at 64 steps on this ODE measured 3e-3 relative (it is 2nd order, see below).
    np.testing.assert_allclose(out, exact, rtol=5e-3)
    # Sample std vs √s²: the flow is linear, so out/exact is one number; the sample std of x0
    # is within 4 SE (σ/√(2n)) of σ_max.
    se = math.sqrt(S2 / (2 * N_SAMPLES))
    assert abs(np.std(out) - math.sqrt(S2)) < 4 * se + 5e-3 * math.sqrt(S2)


def _gmm_ode_solution(x0, sigma_max, sigma_min):
    """Probability-flow ODE in u = ln σ, dx/du = x − D(x, e^u), by DOP853 at rtol 1e-12."""
    sol = integrate.solve_ivp(
        lambda u, x: x - gmm_D(x, math.exp(u)),
        (math.log(sigma_max), math.log(sigma_min)),
        x0,
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
    )
    return sol.y[:, -1]


def test_heun_second_order_euler_first_order_on_mixture():
    sigma_max, sigma_min = 80.0, 0.002
    x0 = np.linspace(-2.5, 2.5, 16) * sigma_max
    exact = _gmm_ode_solution(x0, sigma_max, sigma_min)
    ns = np.array([16, 32, 64, 128])
    heun, euler = [], []
    for n in ns.tolist():
        sigmas = R.edm_sigmas(n, sigma_min, sigma_max)[:-1]  # end at σ_min: every step is Heun
        heun.append(np.max(np.abs(R.heun_sampler(gmm_D, x0, sigmas) - exact)))
        euler.append(np.max(np.abs(R.euler_sampler(gmm_D, x0, sigmas) - exact)))
    # measured: Heun 2.13, Euler 0.99
    assert abs(empirical_order(ns, heun) - 2.0) < 0.4, heun
    assert abs(empirical_order(ns, euler) - 1.0) < 0.2, euler
    assert heun[-1] < 2e-3


def test_heun_deterministic_samples_mixture():
    rng = np.random.default_rng(0)
    x0 = 80.0 * rng.standard_normal(N_SAMPLES)
    out = R.heun_sampler(gmm_D, x0, R.edm_sigmas(64))
    assert stats.kstest(out, gmm_cdf_vp, args=(None,)).pvalue > 0.01  # measured 0.32
    assert abs(out.mean() - GMM_MEAN) < 4 * math.sqrt(GMM_VAR / N_SAMPLES)


def _mixture_fourth_central_moment():
    """μ₄ = Σ w_k E[(x − μ)⁴ | k], with x − μ ~ N(m_k − μ, s_k²): d⁴ + 6d²s² + 3s⁴."""
    d = M - GMM_MEAN
    return np.sum(W * (d**4 + 6 * d**2 * S**2 + 3 * S**4))


def test_stochastic_heun_samples_mixture():
    """EDM Alg. 2 with churn (S_noise = 1, so no deliberate variance inflation)."""
    rng = np.random.default_rng(0)
    x0 = 80.0 * rng.standard_normal(N_SAMPLES)
    out = R.heun_sampler(gmm_D, x0, R.edm_sigmas(128), S_churn=40.0, S_min=0.05, S_max=50.0, rng=rng)
    assert stats.kstest(out, gmm_cdf_vp, args=(None,)).pvalue > 0.01  # measured 0.35
    assert abs(out.mean() - GMM_MEAN) < 4 * math.sqrt(GMM_VAR / N_SAMPLES)
    se_var = math.sqrt((_mixture_fourth_central_moment() - GMM_VAR**2) / N_SAMPLES)
    assert abs(out.var() - GMM_VAR) < 4 * se_var


def test_stochastic_heun_changes_the_path_but_not_the_law():
    """Churn actually injects noise: the stochastic samples differ from the ODE samples."""
    rng = np.random.default_rng(1)
    x0 = 80.0 * rng.standard_normal(1000)
    sigmas = R.edm_sigmas(32)
    det = R.heun_sampler(gmm_D, x0, sigmas)
    sto = R.heun_sampler(gmm_D, x0, sigmas, S_churn=40.0, rng=rng)
    assert np.mean(np.abs(det - sto)) > 0.1


# --- DPM-Solver family ------------------------------------------------------------------------


def test_dpm_solvers_second_order_on_mixture():
    """Order of convergence against the DOP853 solution of the mixture's ODE (as for Heun): the
    slope of log max-error against log N over N = 16..128 steps ending at σ_min. Measured:
    DPM-Solver-2 2.12 (errors 5.6e-2 .. 6.8e-4), DPM-Solver++(2M) 2.23 (1.2e-1 .. 1.2e-3);
    tolerance ±0.3, the pre-asymptotic spread seen between N = 8..64 and 16..128 (≤ 0.15) doubled."""
    sigma_max, sigma_min = 80.0, 0.002
    x0 = np.linspace(-2.5, 2.5, 16) * sigma_max
    exact = _gmm_ode_solution(x0, sigma_max, sigma_min)
    ns = np.array([16, 32, 64, 128])
    for sampler, last in ((R.dpm_2_sampler, 1e-3), (R.dpmpp_2m_sampler, 2e-3)):
        errors = [
            np.max(np.abs(sampler(gmm_D, x0, R.edm_sigmas(n, sigma_min, sigma_max)[:-1]) - exact)) for n in ns.tolist()
        ]
        assert abs(empirical_order(ns, errors) - 2.0) < 0.3, (sampler.__name__, errors)
        assert errors[-1] < last, (sampler.__name__, errors)


def test_dpmpp_2m_first_step_is_euler_and_sde_eta0_is_ode():
    """The first-order data-prediction step (σ_{i+1}/σ_i)x + (1 − σ_{i+1}/σ_i)D is Euler's step; and
    η = 0 turns the SDE solver into DPM-Solver++(2M) exactly."""
    x = np.array([-40.0, 3.0, 75.0])
    sigmas = np.array([80.0, 7.0])
    np.testing.assert_allclose(R.dpmpp_2m_sampler(gmm_D, x, sigmas), R.euler_sampler(gmm_D, x, sigmas), rtol=1e-13)
    sigmas = R.edm_sigmas(12)
    np.testing.assert_array_equal(
        R.dpmpp_2m_sde_sampler(gmm_D, x, sigmas, eta=0.0), R.dpmpp_2m_sampler(gmm_D, x, sigmas)
    )


def test_dpmpp_2m_second_step_by_hand():
    """Step 2 of 2M written out: D_1 + (D_1 − D_0)·h_1/(2h_0) extrapolates in t = −ln σ."""
    x = np.array([-40.0, 3.0, 75.0])
    s0, s1, s2 = 80.0, 10.0, 1.5
    d0 = gmm_D(x, s0)
    x1 = s1 / s0 * x + (1 - s1 / s0) * d0
    d1 = gmm_D(x1, s1)
    h0, h1 = math.log(s0 / s1), math.log(s1 / s2)
    x2 = s2 / s1 * x1 + (1 - s2 / s1) * (d1 + (d1 - d0) * h1 / (2 * h0))
    np.testing.assert_allclose(R.dpmpp_2m_sampler(gmm_D, x, [s0, s1, s2]), x2, rtol=1e-13)


def test_dpmpp_2m_sde_first_step_is_the_ancestral_step():
    """With η = 1 the first-order SDE step is the Gaussian posterior q(x_s | x_t, x = D): in VP
    coordinates z = αx exactly `ancestral_sampler`'s step, for the same ξ."""
    eps_model = eps_from_D(gmm_D)
    x = np.array([-40.0, 3.0, 75.0])
    xi = np.array([[0.3, -1.1, 2.0]])
    for s_t, s_s in [(80.0, 12.0), (2.0, 0.5), (0.1, 0.003)]:
        lt, ls = -2 * math.log(s_t), -2 * math.log(s_s)
        sde = R.dpmpp_2m_sde_sampler(gmm_D, x, [s_t, s_s], noise=xi)
        z = R.ancestral_sampler(eps_model, vp(lt)[0] * x, [lt, ls], noise=xi)
        np.testing.assert_allclose(sde, z / vp(ls)[0], rtol=1e-10, atol=1e-12)


def test_dpmpp_2m_sde_samples_mixture():
    """64 steps of the SDE solver from N(0, 80²): KS against the mixture, mean within 4 SE."""
    rng = np.random.default_rng(0)
    x0 = 80.0 * rng.standard_normal(N_SAMPLES)
    out = R.dpmpp_2m_sde_sampler(gmm_D, x0, R.edm_sigmas(64), rng=rng)
    assert stats.kstest(out, gmm_cdf_vp, args=(None,)).pvalue > 0.01  # measured 0.22
    assert abs(out.mean() - GMM_MEAN) < 4 * math.sqrt(GMM_VAR / N_SAMPLES)
    assert np.mean(np.abs(out - R.dpmpp_2m_sampler(gmm_D, x0, R.edm_sigmas(64)))) > 0.1  # noise was injected


def test_eqx_dpm_samplers_count_calls():
    """eqx: DPM-Solver-2 makes 2N − 1 calls, 2M makes N (debug callbacks count them)."""
    calls = []

    def D(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return (S2 / (S2 + sigma**2)) * x

    n = 7
    for sampler, expected in ((E.dpm_2_sampler, 2 * n - 1), (E.dpmpp_2m_sampler, n)):
        calls.clear()
        jax.block_until_ready(sampler(D, jnp.ones(3, jnp.float32), E.edm_sigmas(n)))
        jax.effects_barrier()
        assert len(calls) == expected, sampler.__name__


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_generate_stepped_equals_scan(sampler):
    """`generate(unroll=True)` (one compiled step called N times) draws the same samples as the
    samplers' own `lax.scan` (`unroll=False`): same start, same noise, same arithmetic."""
    from eqx_impl.evaluation import generate

    def eps(z, logsnr):  # Bayes ε-model of N(0, S2) data in VP coordinates
        alpha2 = jax.nn.sigmoid(logsnr)
        return jnp.sqrt(1 - alpha2) / (alpha2 * S2 + (1 - alpha2)) * z

    runs = [generate(eps, 6, (3,), key=jax.random.key(1), sampler=sampler, steps=5, unroll=u) for u in (False, True)]
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(runs[0])) and np.std(runs[0]) > 0.1


# --- NFE -------------------------------------------------------------------------------------


class Counter:
    def __init__(self, D):
        self.D, self.calls = D, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.D(x, sigma)


@pytest.mark.parametrize("n", [2, 5, 18])
def test_heun_nfe(n):
    x = 80.0 * np.ones(3)
    for kwargs in ({}, {"S_churn": 30.0, "rng": np.random.default_rng(0)}):
        D = Counter(gauss_D)
        R.heun_sampler(D, x, R.edm_sigmas(n), **kwargs)
        assert D.calls == 2 * n - 1
    D = Counter(gauss_D)
    R.heun_sampler(D, x, R.edm_sigmas(n)[:-1])  # ends at σ_min > 0: no Euler-only last step
    assert D.calls == 2 * (n - 1)
    D = Counter(gauss_D)
    R.euler_sampler(D, x, R.edm_sigmas(n))
    assert D.calls == n
    D = Counter(gauss_D)
    R.dpm_2_sampler(D, x, R.edm_sigmas(n))
    assert D.calls == 2 * n - 1
    for kwargs in ({}, {"rng": np.random.default_rng(0)}):
        D = Counter(gauss_D)
        (R.dpmpp_2m_sde_sampler if kwargs else R.dpmpp_2m_sampler)(D, x, R.edm_sigmas(n), **kwargs)
        assert D.calls == n


def test_eqx_heun_nfe_skips_last_correction():
    """The eqx sampler's lax.cond runs the correction only while σ_{i+1} > 0."""
    calls = []

    def D(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return (S2 / (S2 + sigma**2)) * x

    n = 7
    jax.block_until_ready(E.heun_sampler(D, jnp.ones(3, jnp.float32), E.edm_sigmas(n)))
    jax.effects_barrier()
    assert len(calls) == 2 * n - 1


# --- VP samplers -----------------------------------------------------------------------------


def test_ancestral_step_is_the_gaussian_posterior():
    """One step with ξ = 0 and ξ = 1 gives the mean and mean + std of q(z_s | z_t, x = x̂),
    computed from the generic conditioning formulas α_{t|s} = α_t/α_s,
    σ²_{t|s} = σ_t² − α²_{t|s}σ_s², μ = α_{t|s}σ_s²/σ_t² z_t + α_s σ²_{t|s}/σ_t² x̂,
    var = σ²_{t|s}σ_s²/σ_t²."""
    eps_model = eps_from_D(gmm_D)
    z = np.array([0.3, -1.2, 2.0])
    for lt, ls in [(-6.0, -5.0), (-1.0, 0.5), (2.0, 9.0)]:
        (at, st), (as_, ss) = vp(lt), vp(ls)
        x_hat = (z - st * eps_model(z, lt)) / at
        a_ts, s2_ts = at / as_, st**2 - (at / as_) ** 2 * ss**2
        mean = a_ts * ss**2 / st**2 * z + as_ * s2_ts / st**2 * x_hat
        std = math.sqrt(s2_ts * ss**2 / st**2)
        for xi in (0.0, 1.0):
            out = R.ancestral_sampler(eps_model, z, [lt, ls], noise=np.full((1, 3), xi))
            np.testing.assert_allclose(out, mean + xi * std, rtol=1e-12, atol=1e-14)
        ddim = R.ddim_sampler(eps_model, z, [lt, ls])
        np.testing.assert_allclose(ddim, as_ * x_hat + ss * eps_model(z, lt), rtol=1e-12)


def _gaussian_eps(z, logsnr):
    alpha, sigma = vp(logsnr)
    return sigma / (alpha**2 * S2 + sigma**2) * z


def _ancestral_variance_recursion(logsnrs, v0):
    """For Gaussian data each ancestral step is z_s = a z_t + b ξ with
    a = (α_s/α_t)(1 − σ_t c·σ_t/(α_t² s² + σ_t²)), b² = σ_s² c, so Var z_s = a² Var z_t + b²."""
    v = v0
    for lt, ls in zip(logsnrs[:-1], logsnrs[1:], strict=True):
        (at, st), (as_, ss) = vp(lt), vp(ls)
        c = -math.expm1(lt - ls)
        a = as_ / at * (1 - st * c * st / (at**2 * S2 + st**2))
        v = a**2 * v + ss**2 * c
    return v


def test_ancestral_gaussian_variance():
    lmin, lmax = -8.0, 6.0
    target = lambda lam: vp(lam)[0] ** 2 * S2 + vp(lam)[1] ** 2  # noqa: E731
    # The exact recursion converges to the true marginal variance, first order in the step.
    gaps = []
    ns = np.array([32, 64, 128, 256])
    for n in ns.tolist():
        logsnrs = R.Cosine(lmin, lmax).logsnr(np.linspace(1, 0, n + 1))
        gaps.append(abs(_ancestral_variance_recursion(logsnrs, target(lmin)) - target(lmax)))
    # measured: order 0.93, relative gap 2.0% at 256 steps
    assert abs(empirical_order(ns, gaps) - 1.0) < 0.2 and gaps[-1] / target(lmax) < 3e-2
    # The sampler realises that recursion: sample variance within 4 SE of it, and the output
    # is exactly Gaussian (a linear map of Gaussians), so KS against N(0, v) must pass.
    rng = np.random.default_rng(0)
    z0 = math.sqrt(target(lmin)) * rng.standard_normal(N_SAMPLES)
    z = R.ancestral_sampler(_gaussian_eps, z0, logsnrs, rng=rng)
    v = _ancestral_variance_recursion(logsnrs, target(lmin))
    assert abs(z.var() - v) < 4 * v * math.sqrt(2 / N_SAMPLES)
    assert abs(z.mean()) < 4 * math.sqrt(v / N_SAMPLES)
    assert stats.kstest(z, stats.norm(scale=math.sqrt(v)).cdf).pvalue > 0.01


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_vp_samplers_sample_mixture_marginal(sampler):
    """Start from the exact noisy marginal at λ = −8, end at λ = 6 (256 cosine-spaced steps):
    KS against the exact mixture marginal there."""
    lmin, lmax = -8.0, 6.0
    logsnrs = R.Cosine(lmin, lmax).logsnr(np.linspace(1, 0, 257))
    rng = np.random.default_rng(0)
    z0 = sample_gmm_vp(N_SAMPLES, lmin, rng)
    eps_model = eps_from_D(gmm_D)
    if sampler == "ancestral":
        z = R.ancestral_sampler(eps_model, z0, logsnrs, rng=rng)
    else:
        z = R.ddim_sampler(eps_model, z0, logsnrs)
    # measured p: ancestral 0.49, DDIM 0.64
    assert stats.kstest(z, gmm_cdf_vp, args=(lmax,)).pvalue > 0.01


def test_ddim_converges_to_exact_ode_solution():
    """Gaussian data: z(λ) = α(λ)·x_edm(σ), x_edm(σ) = x_edm(σ₀)√(s²+σ²)/√(s²+σ₀²)."""
    lmin, lmax = -10.0, 8.0
    z0 = np.linspace(-3, 3, 7)
    a0, amax = vp(lmin)[0], vp(lmax)[0]
    s0, s1 = math.exp(-lmin / 2), math.exp(-lmax / 2)
    exact = amax * (z0 / a0) * math.sqrt(S2 + s1**2) / math.sqrt(S2 + s0**2)
    ns = np.array([64, 128, 256, 512])
    errors = []
    for n in ns.tolist():
        logsnrs = R.Cosine(lmin, lmax).logsnr(np.linspace(1, 0, n + 1))
        errors.append(np.max(np.abs(R.ddim_sampler(_gaussian_eps, z0, logsnrs) - exact)))
    assert abs(empirical_order(ns, errors) - 1.0) < 0.2, errors
    assert errors[-1] < 1e-2 * np.max(np.abs(exact))


def test_ddim_is_euler_in_edm_coordinates():
    """z_s/α_s = x̂ + σ_s^edm ε̂ = x + (σ_s − σ_t)(x − x̂)/σ_t: DDIM = Euler on x = z/α."""
    from tests.nets import init_params, numpy_mlp

    eps_model = numpy_mlp(init_params(4, seed=5))
    logsnrs = np.array([-7.0, -3.0, -0.5, 1.0, 4.0, 9.0])
    z0 = np.random.default_rng(6).normal(size=4)
    z = R.ddim_sampler(eps_model, z0, logsnrs)
    alphas = vp(logsnrs)[0]
    x = R.euler_sampler(R.denoiser_from_eps(eps_model), z0 / alphas[0], R.logsnr_to_sigma(logsnrs))
    np.testing.assert_allclose(z / alphas[-1], x, rtol=1e-11)


def test_reference_samplers_accept_batches():
    """The reference passes the whole array: a batch equals the per-example results."""
    rng = np.random.default_rng(2)
    x = 80.0 * rng.standard_normal((5, 3))
    noise = rng.standard_normal((10, 5, 3))
    sigmas = R.edm_sigmas(10)
    batch = R.heun_sampler(gmm_D, x, sigmas, S_churn=20.0, noise=noise)
    for i in range(5):
        one = R.heun_sampler(gmm_D, x[i], sigmas, S_churn=20.0, noise=noise[:, i])
        np.testing.assert_allclose(batch[i], one, rtol=1e-13)


# --- bad inputs ------------------------------------------------------------------------------


def test_heun_requires_noise_or_rng_when_churning():
    with pytest.raises(ValueError, match="pass noise="):
        R.heun_sampler(gauss_D, np.ones(3), R.edm_sigmas(4), S_churn=10.0)


def test_heun_rejects_wrong_noise_shape():
    with pytest.raises(ValueError, match=r"needs \(4, 3\)"):
        R.heun_sampler(gauss_D, np.ones(3), R.edm_sigmas(4), S_churn=10.0, noise=np.ones((3, 3)))


def test_heun_rejects_increasing_sigmas():
    with pytest.raises(ValueError, match="strictly decreasing"):
        R.heun_sampler(gauss_D, np.ones(3), R.edm_sigmas(4)[::-1])


def test_heun_rejects_negative_churn():
    with pytest.raises(ValueError, match="S_churn must be finite and >= 0"):
        R.heun_sampler(gauss_D, np.ones(3), R.edm_sigmas(4), S_churn=-1.0)


def test_heun_rejects_reversed_churn_range():
    with pytest.raises(ValueError, match="S_min=5.0 must be <= S_max=1.0"):
        R.heun_sampler(gauss_D, np.ones(3), R.edm_sigmas(4), S_min=5.0, S_max=1.0)


def test_euler_rejects_single_sigma():
    with pytest.raises(ValueError, match="at least 2 noise levels"):
        R.euler_sampler(gauss_D, np.ones(3), [80.0])


def test_ddim_rejects_decreasing_logsnrs():
    with pytest.raises(ValueError, match="strictly increasing"):
        R.ddim_sampler(_gaussian_eps, np.ones(3), [3.0, 0.0, -3.0])


def test_ancestral_requires_noise_or_rng():
    with pytest.raises(ValueError, match="pass noise="):
        R.ancestral_sampler(_gaussian_eps, np.ones(3), [-3.0, 0.0, 3.0])


def test_dpmpp_2m_sde_rejects_bad_eta_and_needs_noise():
    with pytest.raises(ValueError, match="eta must be finite and >= 0"):
        R.dpmpp_2m_sde_sampler(gauss_D, np.ones(3), R.edm_sigmas(4), eta=-1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="pass noise="):
        R.dpmpp_2m_sde_sampler(gauss_D, np.ones(3), R.edm_sigmas(4))
    with pytest.raises(ValueError, match="pass noise="):
        E.dpmpp_2m_sde_sampler(lambda x, s: x, jnp.ones(3, jnp.float32), E.edm_sigmas(4))
    with pytest.raises(ValueError, match="strictly decreasing"):
        E.dpm_2_sampler(lambda x, s: x, jnp.ones(3, jnp.float32), jnp.asarray([1.0, 2.0, 0.0]))


def test_eqx_samplers_check_concrete_steps_and_noise():
    x = jnp.ones(3, jnp.float32)
    with pytest.raises(ValueError, match="strictly decreasing"):
        E.heun_sampler(lambda x, s: x, x, jnp.asarray([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="strictly increasing"):
        E.ddim_sampler(lambda z, lam: z, x, jnp.asarray([1.0, 0.0]))
    with pytest.raises(ValueError, match="pass noise="):
        E.heun_sampler(lambda x, s: x, x, E.edm_sigmas(3), S_churn=5.0)
    with pytest.raises(ValueError, match=r"needs \(3, 3\)"):
        E.ancestral_sampler(lambda z, lam: z, x, jnp.asarray([-1.0, 0.0, 1.0, 2.0]), noise=jnp.ones((2, 3)))


def test_sampler_compile_benchmark_variants_agree():
    """`benchmarks/sampler_compile.py` times several ways to run the same Heun sampler; the
    unrolled program and the stepped one must draw the same samples up to float32 rounding (the unrolled program folds the constant
    levels differently): |x| ≲ 3 amplified by Σ(√2σ_i − σ_{i+1})/σ_{i+1} ≈ 90 for
    `edm_sigmas(6)` gives ~6e-8·3·90 ≈ 2e-5; measured 2.9e-6, bound 1e-4."""
    from benchmarks import sampler_compile

    eps, shape = sampler_compile.gmm_model()
    timings = sampler_compile.measure(
        eps, shape, "GMM", num=16, steps=6, other_steps=6, sigma_min=0.002, sigma_data=0.0, repeats=1,
        variants=("unrolled", "stepped"),
    )  # fmt: skip
    assert [t.variant for t in timings] == ["unrolled", "stepped"]
    assert all(t.max_diff < 1e-4 and t.run_s > 0 for t in timings)
