"""Probability-flow ODE likelihood (reference side): against closed forms and SciPy.

With the Bayes-optimal denoiser of a Gaussian mixture, the density of the data convolved
with N(0, σ_min² I) is again a mixture (component variances s_k² + σ_min²), so
ln p_{σ_min}(x) is exact. The ODE path ends at x(σ_max), where the true density is the
mixture with variances s_k² + σ_max²: `delta_log_prob` plus that exact density must equal
ln p_{σ_min}(x) up to the solver's error; the Gaussian prior N(0, σ_max² I) adds only the
(separately computed) prior mismatch.
"""

import dataclasses
import math

import numpy as np
import pytest

import reference as R
from reference.ode_likelihood import ode_likelihood_solve_ivp

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
MIXTURES = {
    "2d-isotropic": ([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], [0.4, 0.7]),
    "3d-diagonal": (
        [0.2, 0.5, 0.3],
        [[-1.0, 0.0, 0.5], [1.0, 1.0, -0.5], [0.0, -1.0, 0.0]],
        [[0.3, 0.5, 0.8], [0.6, 0.4, 0.5], [0.5, 0.5, 0.3]],
    ),
}


def _mixture(name):
    return R.GaussianMixture(*(np.asarray(a, dtype=np.float64) for a in MIXTURES[name]))


def _smoothed(mixture, sigma):
    """The mixture convolved with N(0, σ² I): component stds √(s_k² + σ²)."""
    return R.GaussianMixture(mixture.weights, mixture.means, np.sqrt(mixture._stds**2 + sigma**2))


def _flow_error(mixture, x, result):
    """|Δ + ln p_{σ_max}(x(σ_max)) − ln p_{σ_min}(x)|: the solver's error alone (no prior mismatch)."""
    exact = _smoothed(mixture, SIGMA_MIN).log_prob(x)
    return abs(result.delta_log_prob + _smoothed(mixture, SIGMA_MAX).log_prob(result.x_end) - exact)


@pytest.mark.parametrize("name", list(MIXTURES))
def test_ode_likelihood_oracle_equals_closed_form(name):
    """solve_ivp (RK45, rtol = atol = 1e-11): flow error <= 1e-8 at three points; the full
    log-likelihood differs from the exact one by exactly the prior mismatch (to 1e-8), which
    below 0.05 nats for σ_max = 80 (it is first order in ‖E x‖/σ_max: the prior is centred
    at 0, the mixture's mean is not)."""
    mixture = _mixture(name)
    denoiser = R.denoiser_from_x(mixture.denoise)
    rng = np.random.default_rng(0)
    for x in mixture.sample(3, rng=rng):
        result = ode_likelihood_solve_ivp(denoiser, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
        assert _flow_error(mixture, x, result) < 1e-8
        mismatch = result.prior_log_prob - _smoothed(mixture, SIGMA_MAX).log_prob(result.x_end)
        exact = _smoothed(mixture, SIGMA_MIN).log_prob(x)
        assert result.log_prob - exact == pytest.approx(mismatch, abs=1e-8)
        assert abs(mismatch) < 0.05
        assert result.log_prob == pytest.approx(result.prior_log_prob + result.delta_log_prob, abs=1e-14)


def _observed_orders(mixture, x, solver, steps):
    denoiser = R.denoiser_from_x(mixture.denoise)
    errors = [
        _flow_error(
            mixture,
            x,
            R.ode_likelihood(denoiser, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, num_steps=n, solver=solver),
        )
        for n in steps
    ]
    return errors, [math.log2(a / b) for a, b in zip(errors[:-1], errors[1:], strict=True)]


@pytest.mark.parametrize(("solver", "order", "steps"), [("heun", 2, (64, 128, 256)), ("rk4", 4, (32, 64, 128))])
def test_ode_likelihood_error_falls_at_solver_order(solver, order, steps):
    """Doubling the steps divides the error by 2^order: observed log2 ratios within ±0.35 of
    the order (measured: Heun 1.94, 1.97; RK4 3.93, 3.96), and the finest error is small."""
    mixture = _mixture("2d-isotropic")
    errors, orders = _observed_orders(mixture, np.array([0.3, -0.2]), solver, steps)
    assert all(abs(p - order) < 0.35 for p in orders), (errors, orders)
    assert errors[-1] < (1e-3 if solver == "heun" else 1e-6)


def test_ode_likelihood_fixed_step_converges_to_oracle():
    """RK4 with 256 steps agrees with the solve_ivp oracle (x_end and Δ) to 1e-6 (measured 1e-7)."""
    mixture = _mixture("3d-diagonal")
    denoiser = R.denoiser_from_x(mixture.denoise)
    x = np.array([0.2, 0.1, -0.4])
    fixed = R.ode_likelihood(denoiser, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, num_steps=256, solver="rk4")
    oracle = ode_likelihood_solve_ivp(denoiser, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    assert fixed.delta_log_prob == pytest.approx(oracle.delta_log_prob, abs=1e-6)
    np.testing.assert_allclose(fixed.x_end, oracle.x_end, rtol=1e-6)


def _sign_vectors(d):
    """All 2^d vectors of ±1: their mean of vᵀJv is tr J exactly (off-diagonal terms cancel)."""
    return np.array(np.meshgrid(*[[-1.0, 1.0]] * d, indexing="ij")).reshape(d, -1).T


@pytest.mark.parametrize("solver", ["heun", "rk4"])
def test_hutchinson_over_all_sign_vectors_is_the_exact_trace(solver):
    """With all 2^d Rademacher probes the estimate equals the exact-trace run (to 1e-9; the
    finite-difference JVPs along different directions differ by ~1e-12)."""
    mixture = _mixture("3d-diagonal")
    denoiser = R.denoiser_from_x(mixture.denoise)
    x = np.array([0.5, -0.3, 0.2])
    kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, num_steps=8, solver=solver)
    exact = R.ode_likelihood(denoiser, x, **kw)
    probed = R.ode_likelihood(denoiser, x, probes=_sign_vectors(3), **kw)
    assert probed.log_prob == pytest.approx(exact.log_prob, abs=1e-9)
    np.testing.assert_array_equal(probed.x_end, exact.x_end)  # the path ignores the probes


B = np.array([[0.6, 0.3, -0.2, 0.1], [0.1, 0.4, 0.5, 0.0], [-0.3, 0.2, 0.7, 0.2], [0.0, -0.4, 0.1, 0.5]])


def _linear(x, sigma):
    """D(x; σ) = B x on a batch `(n, 4)`: J_D = B everywhere, so Δ̂ = L(d − vᵀBv), L = ln(σ_max/σ_min)."""
    return x @ B.T


def _hutchinson_runs(probes):
    kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, num_steps=1, solver="heun")
    return np.array([R.ode_likelihood(_linear, np.ones(4), probes=v[None], **kw).delta_log_prob for v in probes])


def test_hutchinson_variance_rademacher_exact():
    """Over all 16 sign vectors (equally likely under Rademacher probes) Δ̂ has mean L(d − tr B)
    and variance L²·2(‖S‖_F² − Σ S_ii²), S = (B + Bᵀ)/2, to 1e-9 relative."""
    length = math.log(SIGMA_MAX / SIGMA_MIN)
    values = _hutchinson_runs(_sign_vectors(4))
    sym = 0.5 * (B + B.T)
    assert values.mean() == pytest.approx(length * (4 - np.trace(B)), rel=1e-9)
    expected = length**2 * 2.0 * (np.sum(sym**2) - np.sum(np.diag(sym) ** 2))
    assert values.var() == pytest.approx(expected, rel=1e-9)


def test_hutchinson_variance_gaussian_within_confidence_bound():
    """Gaussian probes: Var Δ̂ = L²·2‖S‖_F²; 4000 draws (seed 3), sample variance within 5
    standard errors (from the sample's fourth central moment) of it, mean within 5 stderr."""
    length = math.log(SIGMA_MAX / SIGMA_MIN)
    n = 4000
    values = _hutchinson_runs(np.random.default_rng(3).standard_normal((n, 4)))
    sym = 0.5 * (B + B.T)
    expected = length**2 * 2.0 * np.sum(sym**2)
    centred = values - values.mean()
    var = np.mean(centred**2)
    var_stderr = math.sqrt((np.mean(centred**4) - var**2) / n)
    assert abs(var - expected) < 5 * var_stderr
    assert abs(values.mean() - length * (4 - np.trace(B))) < 5 * math.sqrt(var / n)


def test_dequantized_bits_per_dim():
    """The uniform density on [−1, 1]^d scores log2(V) bits/dim on dequantised levels (the
    uniform distribution over V levels); continuous data match the ELBO's bits_per_dim."""
    d, levels = 5, 17
    x = np.arange(d)
    u = np.linspace(0.0, 0.99, d)
    y = R.dequantize(x, u, levels)
    np.testing.assert_allclose(y, R.levels_to_unit(x, levels) + (2 * u - 1) / levels, rtol=0, atol=1e-15)
    assert np.all((y >= -1) & (y < 1))
    assert R.ode_bits_per_dim(-d * math.log(2.0), d, levels) == pytest.approx(math.log2(levels), rel=1e-15)
    assert R.ode_bits_per_dim(-3.7, d) == pytest.approx(R.bits_per_dim(3.7, 0.0, 0.0, d), rel=1e-15)


def test_ode_likelihood_bad_input():
    mixture = _mixture("2d-isotropic")
    denoiser = R.denoiser_from_x(mixture.denoise)
    x = np.zeros(2)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        R.ode_likelihood(denoiser, x, sigma_min=1.0, sigma_max=0.5, num_steps=4)
    with pytest.raises(ValueError, match="num_steps"):
        R.ode_likelihood(denoiser, x, sigma_min=0.1, sigma_max=1.0, num_steps=0)
    with pytest.raises(ValueError, match="unknown solver"):
        R.ode_likelihood(denoiser, x, sigma_min=0.1, sigma_max=1.0, num_steps=4, solver="euler")
    with pytest.raises(ValueError, match="probes must have shape"):
        R.ode_likelihood(denoiser, x, sigma_min=0.1, sigma_max=1.0, num_steps=4, probes=np.ones(2))
    with pytest.raises(ValueError, match="num_levels"):
        R.dequantize(np.zeros(2), np.zeros(2), 1)
    with pytest.raises(ValueError, match="shaped like x"):
        R.dequantize(np.zeros(2), np.zeros(3), 4)


# --- the data-set metric (eqx): `evaluate --metrics nll_ode` ------------------------------------


def _eqx_mixture(name):
    import eqx_impl as E

    return E.GaussianMixture(*(np.asarray(a, dtype=np.float32) for a in MIXTURES[name]))


def test_ode_nll_continuous_matches_exact_mixture_density():
    """Bayes ε-model of the 2-D mixture, continuous data, exact trace (auto for D = 2), RK4 with
    64 steps, σ_max = 500 (prior mismatch ~1e-3): −ln p within 5e-3 nats of the exact
    ln p_{σ_min} per example (with the default 32 steps the worst of these 16 is 9.6e-3, at
    a low-density point), and bits/dim = nats/(D ln 2)."""
    import jax

    from eqx_impl.evaluation.ode_likelihood import ode_nll

    mixture = _mixture("2d-isotropic")
    data = mixture.sample(16, rng=np.random.default_rng(1)).astype(np.float32)
    result = ode_nll(
        _eqx_mixture("2d-isotropic").eps,
        data,
        key=jax.random.key(0),
        sigma_min=SIGMA_MIN,
        sigma_max=500.0,
        num_steps=64,
    )
    exact = _smoothed(mixture, SIGMA_MIN).log_prob(data.astype(np.float64))
    np.testing.assert_allclose(result.per_example * 2 * math.log(2.0), -exact, atol=5e-3)
    assert result.num_probes == 0
    assert result.nats.mean == pytest.approx(-exact.mean(), abs=5e-3)


def test_ode_nll_dequantized_levels_match_exact_density():
    """Levels 0..16 of the 2-D mixture's domain, dequantised with u from fold_in(key, i) (the
    documented contract): bits/dim = −(ln p_{σ_min}(y) + 2 ln(2/17))/(2 ln 2) with the exact
    mixture density at y, within 5e-3 nats."""
    import jax

    from eqx_impl.evaluation.ode_likelihood import ode_nll

    levels, key = 17, jax.random.key(4)
    data = np.random.default_rng(2).integers(4, 13, size=(8, 2))
    result = ode_nll(
        _eqx_mixture("2d-isotropic").eps, data, key=key, sigma_min=SIGMA_MIN, sigma_max=500.0, num_levels=levels
    )
    u = np.stack(
        [
            np.asarray(jax.random.uniform(jax.random.split(jax.random.fold_in(key, i))[0], (2,)), np.float64)
            for i in range(len(data))
        ]
    )
    y = R.dequantize(data, u, levels)
    exact = _smoothed(_mixture("2d-isotropic"), SIGMA_MIN).log_prob(y)
    expected = R.ode_bits_per_dim(exact, 2, levels)
    np.testing.assert_allclose(result.per_example, expected, atol=5e-3 / (2 * math.log(2.0)))


def test_ode_nll_hutchinson_for_high_dimensional_data():
    """D = 40 > EXACT_MAX_DIM: one Rademacher probe per example. For x ~ N(0, s² I) the Bayes
    Jacobian is a multiple of I, whose Rademacher estimate has zero variance, so each
    example still matches the closed form ln N(x; 0, (s² + σ_min²) I): RK4 with 64 steps,
    5e-3 nats (measured solver error 1.8e-3; 2.4e-2 with 32 steps, falling 14x per doubling;
    prior mismatch ~ d s²/(2σ_max²) = 4e-5)."""
    import jax

    import eqx_impl as E
    from eqx_impl.evaluation.ode_likelihood import ode_nll

    dim, var = 40, 0.5
    data = (math.sqrt(var) * np.random.default_rng(5).standard_normal((6, dim))).astype(np.float32)
    result = ode_nll(
        E.GaussianData(var, dim).eps, data, key=jax.random.key(1), sigma_min=SIGMA_MIN, sigma_max=500.0, num_steps=64
    )
    exact = R.GaussianData(var + SIGMA_MIN**2, dim).log_prob(data.astype(np.float64))
    assert result.num_probes == 1
    np.testing.assert_allclose(-result.per_example * dim * math.log(2.0), exact, atol=5e-3)


def test_ode_nll_rejects_discrete_data_without_dequantisation():
    import jax

    from eqx_impl.evaluation.ode_likelihood import ode_nll

    with pytest.raises(ValueError, match="no dequantisation is set"):
        ode_nll(
            _eqx_mixture("2d-isotropic").eps,
            np.zeros((4, 2), np.int64),
            key=jax.random.key(0),
            sigma_min=0.01,
            sigma_max=80.0,
        )
    with pytest.raises(ValueError, match="integer levels"):
        ode_nll(
            _eqx_mixture("2d-isotropic").eps,
            np.full((4, 2), 0.5),
            key=jax.random.key(0),
            sigma_min=0.01,
            sigma_max=80.0,
            num_levels=4,
        )


def test_evaluate_model_reports_nll_ode_in_bits_per_dim():
    """`evaluate --metrics nll_ode` path (`evaluate_model`) on the tiny GMM config with an
    untrained network: its output layer starts at zero, so ε̂ = 0, D(x; σ) = x, the ODE does not
    move and the divergence vanishes. The likelihood is then exactly the prior
    N(0, σ_max² I) at the data, σ_max = e^{−λ_min/2} = e^5: a closed form for the plumbing
    (σ range, data split, bits/dim), to float32 accuracy."""

    from eqx_impl.train import ConfigError, build
    from eqx_impl.train.evaluate import evaluate_model
    from tests.train_helpers import tiny_config

    setup = build(tiny_config())
    config = dataclasses.replace(setup.config, eval=dataclasses.replace(setup.config.eval, bpd_examples=16))
    dataset, model = setup.dataset, setup.initial.model
    out = evaluate_model(config, dataset, model, None, metrics=["nll_ode"])
    test = dataset.model_data("test")[:16].astype(np.float64)
    sigma_max = math.exp(-0.5 * config.objective.logsnr_min)
    nats = 0.5 * (np.sum(test**2, axis=1) / sigma_max**2 + 2 * math.log(2 * math.pi * sigma_max**2))
    assert out["nll_ode_nats"] == pytest.approx(nats.mean(), rel=1e-5)
    assert out["nll_ode_bpd"] == pytest.approx(nats.mean() / (2 * math.log(2.0)), rel=1e-5)
    assert out["nll_ode_probes"] == 0.0  # exact trace for 2-D data
    with pytest.raises(ConfigError, match="eval.ode_probes"):
        dataclasses.replace(config.eval, ode_probes=0)
