"""VDM's learned monotone schedule (SPEC §6): monotone, endpoints, inverse and its gradients."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_impl as E

T = jnp.linspace(0.0, 1.0, 101)


@pytest.fixture(scope="module")
def trained_like():
    """A Learned schedule pushed away from linear (l3 scaled up), so the tests see a curved network."""
    schedule = E.Learned(-12.0, 10.0, key=jax.random.key(0), width=64)
    return eqx.tree_at(lambda s: s.l3_weight, schedule, schedule.l3_weight * 4e4)


def test_initialisation_is_the_linear_schedule():
    schedule = E.Learned(-12.0, 10.0, key=jax.random.key(1))
    np.testing.assert_allclose(schedule.logsnr(T), E.LinearLogSNR(-12.0, 10.0).logsnr(T), atol=1e-4)


def test_fixed_endpoints_and_monotone(trained_like):
    lam = np.asarray(trained_like.logsnr(T))
    assert lam[0] == pytest.approx(10.0, abs=1e-5) and lam[-1] == pytest.approx(-12.0, abs=1e-5)
    assert np.all(np.diff(lam) < 0)
    curvature = lam - np.asarray(E.LinearLogSNR(-12.0, 10.0).logsnr(T))
    assert np.max(np.abs(curvature)) > 0.1  # the network really bends the schedule


def test_inverse_and_density(trained_like):
    lam = trained_like.logsnr(T[1:-1])
    np.testing.assert_allclose(trained_like.inverse(lam), T[1:-1], atol=2e-6)
    h = 1e-3
    fd = (trained_like.logsnr(T[1:-1] + h) - trained_like.logsnr(T[1:-1] - h)) / (2 * h)
    np.testing.assert_allclose(trained_like.dlogsnr_dt(T[1:-1]), fd, rtol=1e-3)
    np.testing.assert_allclose(trained_like.density(lam), -1.0 / fd, rtol=1e-3)


def test_inverse_gradient_is_implicit(trained_like):
    """d t(λ)/dλ = 1/λ'(t) flows through the bisection by the final Newton step."""
    lam = jnp.float32(1.5)
    grad = jax.grad(trained_like.inverse)(lam)
    t = trained_like.inverse(lam)
    np.testing.assert_allclose(grad, 1.0 / trained_like.dlogsnr_dt(t), rtol=1e-4)


def test_parameter_gradient_matches_finite_difference():
    """The gradient of the estimator's second moment w.r.t. the schedule weights (VDM App. I.2)."""
    with jax.enable_x64(True):
        schedule = E.Learned(-10.0, 10.0, key=jax.random.key(2), width=8)
        schedule = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), schedule)
        schedule = eqx.tree_at(lambda s: s.l3_weight, schedule, schedule.l3_weight * 4e3)  # curved
        u = jnp.linspace(0.01, 0.99, 33, dtype=jnp.float64)

        def second_moment(s):
            lam = s.logsnr(u)
            return jnp.mean((E.Sigmoid(2.0)(lam) / s.density(lam) * jax.nn.sigmoid(lam)) ** 2)

        grad = jax.grad(second_moment)(schedule).l2_bias
        h = 1e-4  # central difference: truncation ~h², rounding ~ε·|f|/h, both < 1e-7 relative
        for j in range(3):
            bump = jnp.zeros(8, jnp.float64).at[j].set(h)
            plus = eqx.tree_at(lambda s: s.l2_bias, schedule, schedule.l2_bias + bump)
            minus = eqx.tree_at(lambda s: s.l2_bias, schedule, schedule.l2_bias - bump)
            fd = (second_moment(plus) - second_moment(minus)) / (2 * h)
            np.testing.assert_allclose(grad[j], fd, rtol=1e-5, atol=1e-9)


def test_learned_endpoints_move_with_parameters():
    schedule = E.Learned(-10.0, 10.0, key=jax.random.key(3), width=8, fixed_endpoints=False)
    # at initialisation the small l3 term moves the ends by ~1e-3 from the linear schedule's
    assert float(schedule.logsnr_max) == pytest.approx(10.0, abs=1e-2)
    shifted = eqx.tree_at(lambda s: s.l1_bias, schedule, schedule.l1_bias - 2.0)
    assert float(shifted.logsnr_max - schedule.logsnr_max) == pytest.approx(2.0, abs=1e-5)
    assert float(shifted.logsnr(1.0)) == pytest.approx(float(shifted.logsnr_min), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, match", [(dict(logsnr_min=5.0, logsnr_max=-5.0), "reversed"), (dict(width=0), "width")]
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.Learned(**kwargs, key=jax.random.key(0))
