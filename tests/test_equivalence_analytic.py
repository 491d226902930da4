r"""Equivalence of `eqx_impl.analytic` (float32, and float64 under x64) with `reference.analytic`.

Inputs are drawn in float64, rounded to float32, and the *same* rounded values go to both
sides, so only the arithmetic differs. Tolerances follow a first-order rounding model:
every log-space quantity (a logit $\ell_k$, $\ln v_k$, the exponent of $\alpha$ or $\sigma$)
of size $M$ carries an absolute error of a few $uM$ ($u$ the unit roundoff), which becomes a
relative error of that size after `exp` or `softmax`. So with
$M = 1 + |\lambda| + \max_k|\ell_k|$, a mixture quantity $\sum_k r_k q_k$ is compared as
$$|\mathrm{eqx} - \mathrm{ref}| \le C\,u\,M \sum_k r_k |q_k|,$$
relative to the sum of magnitudes, so entries that cancel between components get an
absolute floor rather than a relative one. $C = 16$: over 300 random examples per test the
largest error was $3.5\,uM\sum_k r_k|q_k|$ (ratio 0.22 to the bound). The x64 variant uses
$u = 10^{-10}/C$, i.e. the bound $10^{-10} M\sum_k r_k|q_k|$: far above float64 rounding
(largest observed ratio 3e-4) and far below float32's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import special, stats

import eqx_impl as ex
import reference as rf

U32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff
C = 16.0
X64_RTOL = 1e-10
# Few distinct shapes: un-jitted JAX compiles each primitive once per shape (~2 s per new
# (K, dim) on CPU), so shape variety, not the number of examples, sets the run time.
SHAPES = [(2, 1), (3, 3)]  # (K, dim); K = 1 is GaussianData's test
BATCH = 4
NUM = 20_000

logsnrs = st.one_of(st.sampled_from([-30.0, 30.0, 0.0]), st.floats(-30.0, 30.0, width=32))


@st.composite
def mixture_params(draw, shapes=SHAPES):
    """(weights, means, stds) as float32 arrays; weights normalised in float64 first."""
    k, dim = draw(st.sampled_from(shapes))
    raw = draw(arrays(np.float64, k, elements=st.floats(0.05, 1.0)))
    weights = (raw / raw.sum()).astype(np.float32)
    means = draw(arrays(np.float32, (k, dim), elements=st.floats(-3.0, 3.0, width=32)))
    std_shape = (k, dim) if draw(st.booleans()) else (k,)
    stds = draw(arrays(np.float32, std_shape, elements=st.floats(0.125, 2.0, width=32)))
    return weights, means, stds


@st.composite
def gaussian_params(draw, dims=(1, 3)):
    var = float(np.float32(draw(st.floats(-4.0, 4.0).map(math.exp))))
    return var, draw(st.sampled_from(dims))


@st.composite
def batches(draw):
    """A seed for the points and one float32 log-SNR for each of `BATCH` examples."""
    n = BATCH
    lam = np.array(draw(st.lists(logsnrs, min_size=n, max_size=n)), dtype=np.float32)
    return draw(st.integers(0, 2**32 - 1)), lam


def _noisy_points(ref, seed, lam):
    """z = αx + σε with x from the data, rounded to float32, plus the float32 (x, ε)."""
    rng = np.random.default_rng(seed)
    x = ref.sample(len(lam), rng=rng).astype(np.float32)
    eps = rng.standard_normal(x.shape).astype(np.float32)
    z = _z(x.astype(np.float64), eps.astype(np.float64), lam).astype(np.float32)
    return z, x, eps


class Terms(NamedTuple):
    """Float64 per-example pieces of the rounding model (shapes: (B,), (B, K, dim), ...)."""

    size: np.ndarray  # M = 1 + |λ| + max_k |ℓ_k|
    resp: np.ndarray  # r_k, (B, K, 1)
    post: np.ndarray  # posterior means of the components, (B, K, dim)
    eps_k: np.ndarray  # σ (z - αμ_k) / v_k, (B, K, dim)
    score_k: np.ndarray  # |∂ℓ_k/∂z| = |z - αμ_k| / v_k, (B, K, dim)
    gain: np.ndarray  # max_k σ / v_k, (B, dim): ∂ε̂_k/∂z

    def mix(self, q):
        """$\\sum_k r_k |q_k|$."""
        return np.sum(self.resp * np.abs(q), axis=-2)


def _terms(weights, means, stds_full, z, lam):
    """The rounding-model pieces at z; `lam=None` means clean data (α = 1, σ = 0)."""
    if lam is None:
        lam_abs, a2, s2 = 0.0, np.ones((1, 1, 1)), np.zeros((1, 1, 1))
    else:
        lam = np.asarray(lam, np.float64)[:, None, None]
        lam_abs, a2, s2 = np.abs(lam[:, 0, 0]), special.expit(lam), special.expit(-lam)
    alpha, sigma = np.sqrt(a2), np.sqrt(s2)
    var = np.asarray(stds_full, np.float64) ** 2
    v = a2 * var + s2
    diff = np.asarray(z, np.float64)[:, None, :] - alpha * means
    logits = np.log(weights) - 0.5 * np.sum(diff**2 / v + np.log(2 * np.pi * v), axis=-1)
    resp = special.softmax(logits, axis=-1)[..., None]
    size = 1.0 + lam_abs + np.max(np.abs(logits), axis=-1)
    post = means + alpha * var / v * diff
    return Terms(size, resp, post, sigma * diff / v, np.abs(diff) / v, np.max(sigma / v, axis=-2))


def _gauss_terms(var, dim, z, lam):
    return _terms(np.ones(1), np.zeros((1, dim)), np.full((1, dim), math.sqrt(var)), z, lam)


def _mixture_terms(ref, z, lam):
    stds = np.broadcast_to(ref.stds.reshape(len(ref.weights), -1), ref.means.shape)
    return _terms(ref.weights, ref.means, stds, z, lam)


def _assert_close(got, want, size, scale, u=U32):
    """|got - want| <= C u M scale (see the module docstring). **Returns:** max err/bound."""
    got = np.asarray(got, np.float64)
    size = np.asarray(size, np.float64)
    bound = C * u * size[(...,) + (None,) * (np.ndim(want) - size.ndim)] * scale
    err = np.abs(got - want)
    assert got.shape == np.shape(want)
    assert np.all(np.isfinite(got))
    assert np.all(err <= bound), f"max err/bound = {_ratio(err, bound):.3g}"
    return _ratio(err, bound)


def _ratio(err, bound):
    """max err/bound, with 0/0 = 0 (exact zeros, e.g. the prior KL at var = 1)."""
    safe = np.where(bound > 0, bound, 1.0)
    return float(np.max(np.where(bound > 0, err / safe, np.where(err > 0, np.inf, 0.0))))


def _assert_loss_close(got, want, x, eps, lam, terms_at_z, u=U32):
    r"""Optimal loss $\ell = \|\epsilon - \hat\epsilon(z)\|^2$ with z formed inside each package.

    z = αx + σε differs by $\delta z_i \le u M(\alpha|x_i| + \sigma|\epsilon_i|)$ (α, σ are exps of
    log-sigmoids of size ≤ |λ|). First order,
    $\delta\hat\epsilon_j \le uM\sum_k r_k|\hat\epsilon_{kj}| + \max_k(\sigma/v_k)\,\delta z_j
      + 2\sum_k r_k|\hat\epsilon_{kj}| \max_k \sum_i |\partial_i \ell_k|\,\delta z_i$
    (the last from the responsibilities), and $\delta\ell \le \sum_j 2|\epsilon_j - \hat\epsilon_j|\,\delta\hat\epsilon_j + u\ell$.
    """
    t = terms_at_z
    lam = np.asarray(lam, np.float64)[:, None]
    alpha, sigma = np.sqrt(special.expit(lam)), np.sqrt(special.expit(-lam))
    dz = u * t.size[:, None] * (alpha * np.abs(x) + sigma * np.abs(eps))
    resp_shift = np.max(np.sum(t.score_k * dz[:, None, :], axis=-1), axis=-1)[:, None]
    mixed = t.mix(t.eps_k)
    d_eps = u * t.size[:, None] * mixed + t.gain * dz + 2.0 * mixed * resp_shift
    eps_hat = np.sum(t.resp * t.eps_k, axis=-2)
    bound = C * (np.sum(2.0 * np.abs(eps - eps_hat) * d_eps, axis=-1) + u * np.abs(want))
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape and np.all(np.isfinite(got))
    err = np.abs(got - want)
    assert np.all(err <= bound), f"max err/bound = {_ratio(err, bound):.3g}"
    return _ratio(err, bound)


def _z(x, eps, lam):
    lam = np.asarray(lam, np.float64)[:, None]
    return np.sqrt(special.expit(lam)) * x + np.sqrt(special.expit(-lam)) * eps


def _pair_mixture(params, dtype=jnp.float32):
    w, m, s = params
    return rf.GaussianMixture(w, m, s), ex.GaussianMixture(
        jnp.asarray(w, dtype), jnp.asarray(m, dtype), jnp.asarray(s, dtype)
    )


def _call(module, method, *args, dtype=jnp.float32):
    """An eqx method on a batch (leading axis; λ per example), in `dtype`.

    The methods act on one example and broadcast over leading axes; calling them on the
    batch directly is 7x cheaper un-jitted than `jax.vmap`, which
    `_check_vmap_jit` checks gives the same values.
    """
    return np.asarray(getattr(module, method)(*(jnp.asarray(a, dtype) for a in args)))


def _check_denoisers(ref, mod, z, lam, t, u=U32, dtype=jnp.float32):
    """denoise, eps and log_prob_noisy of one batch; the scales are Σ_k r_k |q_k|."""
    for method, scale in [("denoise", t.mix(t.post)), ("eps", t.mix(t.eps_k)), ("log_prob_noisy", 1.0)]:
        got = _call(mod, method, z, lam, dtype=dtype)
        assert got.dtype == np.dtype(dtype)
        _assert_close(got, getattr(ref, method)(z, lam), t.size, scale, u)


# One compiled program for each large Monte Carlo call of a mixture (cheaper than compiling
# its primitives one by one). GaussianData's `var` is static, so it runs un-jitted instead.
_sample = eqx.filter_jit(lambda mod, key: mod.sample(NUM, key=key))
_optimal_loss = eqx.filter_jit(lambda mod, lam, key: mod.optimal_loss(lam, NUM, key=key))


# --- GaussianData ------------------------------------------------------------------------


@given(gaussian_params(), batches())
def test_equivalence_GaussianData_denoise_eps(params, batch):
    var, dim = params
    ref, mod = rf.GaussianData(var, dim), ex.GaussianData(var, dim)
    seed, lam = batch
    z, _, _ = _noisy_points(ref, seed, lam)
    _check_denoisers(ref, mod, z, lam, _gauss_terms(var, dim, z, lam))


@given(gaussian_params(), batches())
def test_equivalence_GaussianData_log_prob(params, batch):
    var, dim = params
    ref, mod = rf.GaussianData(var, dim), ex.GaussianData(var, dim)
    _, x, _ = _noisy_points(ref, *batch)
    t = _gauss_terms(var, dim, x, None)
    _assert_close(_call(mod, "log_prob", x), ref.log_prob(x), t.size, 1.0)


@given(gaussian_params(), logsnrs)
def test_equivalence_GaussianData_closed_forms(params, logsnr):
    # sigmoid/softplus of y = λ + ln s²: relative error ≲ u(1 + |y|); the prior KL adds the
    # cancellation factor ≤ 20 of u - ln(1+u) at the series switch |u| = 0.1.
    var, dim = params
    ref, mod = rf.GaussianData(var, dim), ex.GaussianData(var, dim)
    size = 1.0 + abs(logsnr) + abs(math.log(var))
    for method, factor in [
        ("loss_mean", 1.0),
        ("loss_second_moment", 2.0),
        ("mutual_information", 1.0),
        ("marginal_prior_kl", 20.0),
    ]:
        want = getattr(ref, method)(logsnr)
        # Floor 1e-30 in the scale (an absolute 1e-36): the prior KL near var = 1 and λ = -30 can
        # fall below float32's normal range, which XLA on CPU flushes to zero.
        _assert_close(getattr(mod, method)(jnp.float32(logsnr)), want, size * factor, np.abs(want) + 1e-30)


@given(gaussian_params(), st.integers(0, 2**32 - 1))
def test_equivalence_GaussianData_sample_from_noise(params, seed):
    var, dim = params
    noise = np.random.default_rng(seed).standard_normal((BATCH, dim)).astype(np.float32)
    want = rf.GaussianData(var, dim).sample_from_noise(noise)
    got = ex.GaussianData(var, dim).sample_from_noise(jnp.asarray(noise))
    _assert_close(got, want, 1.0, np.abs(want))


@given(gaussian_params(), batches())
def test_equivalence_GaussianData_optimal_loss_from_noise(params, batch):
    var, dim = params
    ref, mod = rf.GaussianData(var, dim), ex.GaussianData(var, dim)
    seed, lam = batch
    _, x, eps = _noisy_points(ref, seed, lam)
    got = _call(mod, "optimal_loss_from_noise", x, lam, eps)
    want = ref.optimal_loss_from_noise(x, lam, eps)
    _assert_loss_close(got, want, x, eps, lam, _gauss_terms(var, dim, _z(x, eps, lam), lam))


@pytest.mark.parametrize("var", [0.25, 4.0])
def test_equivalence_GaussianData_sample_and_optimal_loss(var):
    # Different generators: compare laws. KS per coordinate of eqx samples against N(0, s²),
    # and the eqx Monte Carlo optimal loss against the closed form within 5 SE.
    mod, ref = ex.GaussianData(var, 2), rf.GaussianData(var, 2)
    x = np.asarray(mod.sample(NUM, key=jax.random.key(0)), np.float64)
    for j in range(2):
        assert stats.kstest(x[:, j], stats.norm(0, math.sqrt(var)).cdf).pvalue > 1e-3
    n = NUM
    lams = np.array([-5.0, 0.0, 5.0])
    est = np.asarray(mod.optimal_loss(jnp.asarray(lams, jnp.float32), n, key=jax.random.key(1)))
    sd = np.sqrt(ref.loss_second_moment(lams) - ref.loss_mean(lams) ** 2)
    assert np.all(np.abs(est - ref.loss_mean(lams)) < 5 * sd / math.sqrt(n))


# --- GaussianMixture ---------------------------------------------------------------------


@given(mixture_params(), batches())
def test_equivalence_GaussianMixture_denoise_eps(params, batch):
    ref, mod = _pair_mixture(params)
    seed, lam = batch
    z, _, _ = _noisy_points(ref, seed, lam)
    _check_denoisers(ref, mod, z, lam, _mixture_terms(ref, z, lam))


@given(mixture_params(), batches())
def test_equivalence_GaussianMixture_log_prob(params, batch):
    ref, mod = _pair_mixture(params)
    _, x, _ = _noisy_points(ref, *batch)
    t = _mixture_terms(ref, x, None)
    _assert_close(_call(mod, "log_prob", x), ref.log_prob(x), t.size, 1.0)


@given(mixture_params(), st.integers(0, 2**32 - 1))
def test_equivalence_GaussianMixture_sample_from_noise(params, seed):
    ref, mod = _pair_mixture(params)
    rng = np.random.default_rng(seed)
    n = BATCH
    u = rng.random(n).astype(np.float32)
    # float32 and float64 cumulative weights differ by ~1e-7: keep u off the boundaries.
    assume(np.min(np.abs(u[:, None] - np.cumsum(ref.weights))) > 1e-5)
    noise = rng.standard_normal((n, ref.dim)).astype(np.float32)
    want = ref.sample_from_noise(u, noise)
    got = mod.sample_from_noise(jnp.asarray(u), jnp.asarray(noise))
    # x = μ_k + s_k·noise: one product and one sum, error ≤ u(|μ_k| + |s_k noise|).
    _assert_close(got, want, 1.0, np.max(np.abs(ref.means)) + 2.0 * np.abs(noise))


@given(mixture_params(), batches())
def test_equivalence_GaussianMixture_optimal_loss_from_noise(params, batch):
    ref, mod = _pair_mixture(params)
    seed, lam = batch
    _, x, eps = _noisy_points(ref, seed, lam)
    got = _call(mod, "optimal_loss_from_noise", x, lam, eps)
    want = ref.optimal_loss_from_noise(x, lam, eps)
    _assert_loss_close(got, want, x, eps, lam, _mixture_terms(ref, _z(x, eps, lam), lam))


def test_equivalence_GaussianMixture_sample_and_optimal_loss():
    # Different generators: compare laws. KS of eqx samples against the exact 1-D CDF; the
    # eqx and reference Monte Carlo floors agree within 5 combined SE.
    w, m, s = [0.2, 0.5, 0.3], [[-2.0], [0.5], [3.0]], [0.4, 1.0, 0.7]
    ref = rf.GaussianMixture(w, m, s)
    mod = ex.GaussianMixture(jnp.asarray(w), jnp.asarray(m), jnp.asarray(s))
    x = np.asarray(_sample(mod, jax.random.key(2)), np.float64)[:, 0]
    cdf = lambda t: sum(wk * stats.norm.cdf(t, mk[0], sk) for wk, mk, sk in zip(w, m, s, strict=True))
    assert stats.kstest(x, cdf).pvalue > 1e-3
    n = NUM
    lams = np.array([-3.0, 0.0, 4.0])
    rng = np.random.default_rng(3)
    xs, eps = ref.sample(n, rng=rng), rng.standard_normal((n, 1))
    losses = ref.optimal_loss_from_noise(xs, lams[:, None], eps)  # (3, n)
    est = np.asarray(_optimal_loss(mod, jnp.asarray(lams, jnp.float32), jax.random.key(4)))
    assert np.all(np.abs(est - losses.mean(-1)) < 5 * math.sqrt(2) * losses.std(-1) / math.sqrt(n))


def _check_vmap_jit(ref, mod):
    """jax.vmap (and jit) of one-example calls equal the batched call and the reference
    (rtol 1e-5: float32 rounding at moderate λ)."""
    z = np.random.default_rng(0).normal(size=(BATCH, 3)).astype(np.float32)
    lam = np.array([-4.0, -0.5, 1.0, 6.0], np.float32)
    for method in ["eps", "denoise", "log_prob_noisy"]:
        batched = _call(mod, method, z, lam)
        mapped = jax.vmap(getattr(mod, method))(jnp.asarray(z), jnp.asarray(lam))
        np.testing.assert_allclose(mapped, batched, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(batched, getattr(ref, method)(z, lam), rtol=1e-5, atol=1e-6)
    jitted = eqx.filter_jit(lambda m, z, lam: jax.vmap(m.eps)(z, lam))(mod, jnp.asarray(z), jnp.asarray(lam))
    np.testing.assert_allclose(jitted, _call(mod, "eps", z, lam), rtol=1e-6, atol=1e-7)


def test_equivalence_GaussianData_vmap_jit():
    _check_vmap_jit(rf.GaussianData(0.7, 3), ex.GaussianData(0.7, 3))


def test_equivalence_GaussianMixture_vmap_jit():
    means = np.random.default_rng(1).normal(size=(3, 3))
    _check_vmap_jit(*_pair_mixture(([0.2, 0.3, 0.5], means, [0.5, 1.0, 1.5])))


def test_equivalence_GaussianMixture_jit_shared_logsnr():
    # A sampler step: one traced λ for the whole batch. On XLA:CPU the logits go through
    # `_xla_cpu.stored` (a `lax.cond` whose branches are equal); values and parameter gradients must
    # equal the eager call (which has no cond) and the reference (rtol 1e-5 as above). Jitted
    # and eager code contract multiply-adds differently: a few float32 ulps of the O(1)
    # terms, hence atol 1e-6 against the eager values.
    means = np.random.default_rng(2).normal(size=(3, 3))
    ref, mod = _pair_mixture(([0.2, 0.3, 0.5], means, [0.5, 1.0, 1.5]))
    z = jnp.asarray(np.random.default_rng(3).normal(size=(BATCH, 3)), jnp.float32)
    lam = jnp.float32(0.7)

    def loss(m, z, lam):
        return jnp.sum(m.eps(z, lam) ** 2) + jnp.sum(m.log_prob_noisy(z, lam))

    jitted = eqx.filter_jit(lambda m, z, lam: (m.eps(z, lam), m.denoise(z, lam), m.log_prob_noisy(z, lam)))
    for method, value in zip(["eps", "denoise", "log_prob_noisy"], jitted(mod, z, lam), strict=True):
        np.testing.assert_allclose(value, getattr(mod, method)(z, lam), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(value, getattr(ref, method)(np.asarray(z), 0.7), rtol=1e-5, atol=1e-6)
    grads = eqx.filter_jit(eqx.filter_grad(loss))(mod, z, lam)
    eager = eqx.filter_grad(loss)(mod, z, lam)
    for leaf, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(leaf, expected, rtol=1e-5, atol=1e-6)
    if jax.default_backend() == "cpu":
        hlo = jax.jit(lambda z, lam: mod.eps(z, lam)).lower(z, lam).compile().as_text()
        assert "conditional(" in hlo, "the logits are no longer stored once (eqx_impl._xla_cpu.stored)"


def test_equivalence_GaussianMixture_traced_parameters():
    # Under jit the parameters are leaves (no recompilation per value); shapes still checked.
    w, m = jnp.asarray([0.3, 0.7]), jnp.asarray([[0.0, 1.0], [2.0, -1.0]])
    s, z = jnp.asarray([0.5, 1.5]), jnp.asarray([0.4, -0.2])

    @jax.jit
    def eps(w, m, s, z, lam):
        return ex.GaussianMixture(w, m, s).eps(z, lam)

    ref = rf.GaussianMixture(np.asarray(w), np.asarray(m), np.asarray(s))
    np.testing.assert_allclose(eps(w, m, s, z, jnp.float32(1.5)), ref.eps(np.asarray(z), 1.5), rtol=1e-5)
    with pytest.raises(ValueError, match="stds must have shape"):
        eps(w, m, jnp.ones(3), z, jnp.float32(1.5))


# --- x64: the same functions at float64 ---------------------------------------------------


@given(gaussian_params(dims=[3]), batches())
def test_equivalence_GaussianData_x64(params, batch):
    var, dim = params
    seed, lam = batch
    lam = lam.astype(np.float64)
    u = X64_RTOL / C
    with jax.enable_x64(True):
        ref, mod = rf.GaussianData(var, dim), ex.GaussianData(var, dim)
        z, x, eps = (a.astype(np.float64) for a in _noisy_points(ref, seed, lam))
        _check_denoisers(ref, mod, z, lam, _gauss_terms(var, dim, z, lam), u, jnp.float64)
        size = 1.0 + np.abs(lam) + abs(math.log(var))
        for method in ["loss_mean", "loss_second_moment", "mutual_information", "marginal_prior_kl"]:
            want = getattr(ref, method)(lam)
            got = getattr(mod, method)(jnp.asarray(lam))
            assert got.dtype == jnp.float64
            _assert_close(got, want, size, np.abs(want), u)
        got = _call(mod, "log_prob", x, dtype=jnp.float64)
        _assert_close(got, ref.log_prob(x), _gauss_terms(var, dim, x, None).size, 1.0, u)
        got = mod.sample_from_noise(jnp.asarray(eps))
        _assert_close(got, ref.sample_from_noise(eps), 1.0, np.abs(eps), u)
        got = _call(mod, "optimal_loss_from_noise", x, lam, eps, dtype=jnp.float64)
        t = _gauss_terms(var, dim, _z(x, eps, lam), lam)
        _assert_loss_close(got, ref.optimal_loss_from_noise(x, lam, eps), x, eps, lam, t, u)


@given(mixture_params(shapes=[(3, 3)]), batches())
def test_equivalence_GaussianMixture_x64(params, batch):
    seed, lam = batch
    lam = lam.astype(np.float64)
    u = X64_RTOL / C
    with jax.enable_x64(True):
        ref, mod = _pair_mixture(params, jnp.float64)
        z, x, eps = (a.astype(np.float64) for a in _noisy_points(ref, seed, lam))
        _check_denoisers(ref, mod, z, lam, _mixture_terms(ref, z, lam), u, jnp.float64)
        got = _call(mod, "log_prob", x, dtype=jnp.float64)
        _assert_close(got, ref.log_prob(x), _mixture_terms(ref, x, None).size, 1.0, u)
        got = _call(mod, "optimal_loss_from_noise", x, lam, eps, dtype=jnp.float64)
        t = _mixture_terms(ref, _z(x, eps, lam), lam)
        _assert_loss_close(got, ref.optimal_loss_from_noise(x, lam, eps), x, eps, lam, t, u)
        uniform = np.random.default_rng(seed).random(len(lam))
        assume(np.min(np.abs(uniform[:, None] - np.cumsum(ref.weights))) > 1e-12)
        got = mod.sample_from_noise(jnp.asarray(uniform), jnp.asarray(eps))
        want = ref.sample_from_noise(uniform, eps)
        _assert_close(got, want, 1.0, np.max(np.abs(ref.means)) + 2.0 * np.abs(eps), u)


# --- validation: the same inputs rejected with the same messages --------------------------


@pytest.mark.parametrize(
    "kwargs",
    # (dim=1.5 is a type error that jaxtyping instrumentation reports first; reference-only test)
    [dict(var=0.0, dim=2), dict(var=float("nan"), dim=2), dict(var=1.0, dim=0), dict(var=-2.0, dim=3)],
)
def test_equivalence_GaussianData_validation(kwargs):
    with pytest.raises(ValueError) as want:
        rf.GaussianData(**kwargs)
    with pytest.raises(ValueError) as got:
        ex.GaussianData(**kwargs)
    assert str(got.value) == str(want.value)


W, M, S = [0.4, 0.6], [[0.0, 1.0], [2.0, -1.0]], [1.0, 0.5]
BAD = [
    ([0.4, 0.5], M, S),
    ([1.2, -0.2], M, S),
    ([[0.4, 0.6]], M, S),
    ([0.2, 0.3, 0.5], M, S),
    (W, [0.0, 1.0], S),
    (W, M, [1.0, 0.5, 2.0]),
    (W, M, [1.0, 0.0]),
    (W, M, [1.0, float("inf")]),
    (W, [[0.0, float("nan")], [2.0, -1.0]], S),
]


@pytest.mark.parametrize(("weights", "means", "stds"), BAD)
def test_equivalence_GaussianMixture_validation(weights, means, stds):
    with pytest.raises(ValueError) as want:
        rf.GaussianMixture(weights, means, stds)
    with pytest.raises(ValueError) as got:
        ex.GaussianMixture(jnp.asarray(weights), jnp.asarray(means), jnp.asarray(stds))
    # The same message up to the float32 rendering of the offending values.
    assert str(got.value).split(",")[0] == str(want.value).split(",")[0]


def test_equivalence_GaussianMixture_sample_from_noise_boundaries():
    # Dyadic weights: exact cumulative sums (0.25, 0.75, 1) in both precisions, so u exactly
    # on a boundary picks the next component on both sides ("first k with u < w_1 + ... + w_k").
    w, m, s = [0.25, 0.5, 0.25], [[-1.0], [0.0], [1.0]], [1.0, 1.0, 1.0]
    ref, mod = _pair_mixture((w, m, s))
    u = np.array([0.0, 0.2499, 0.25, 0.7499, 0.75, 0.9999], np.float32)
    noise = np.zeros((6, 1), np.float32)
    want = ref.sample_from_noise(u, noise)
    np.testing.assert_array_equal(want[:, 0], [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(mod.sample_from_noise(jnp.asarray(u), jnp.asarray(noise)), want)
