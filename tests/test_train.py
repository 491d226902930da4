"""The training step and loop: stratified times, the in-step adaptive update, the learned
schedule's variance gradient, determinism, the loss going down on a toy, the pre-flight
check, and run-directory outputs."""

from __future__ import annotations

import dataclasses
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_impl as ex
import reference as ref
from eqx_impl.analytic import GaussianMixture
from eqx_impl.train import (
    PreflightError,
    TrainingDiverged,
    build,
    fit,
    load_checkpoint,
    registry,
    run_preflight,
    run_steps,
    stratified_uniforms,
    train,
)
from eqx_impl.train.preflight import check_or_raise
from eqx_impl.train.step import Trainer, batch_losses
from tests.train_helpers import tiny_config


def _batch(setup, step=0, batch_size=32):
    data = np.asarray(setup.dataset.model_data("train"))
    return jnp.asarray(data[step * batch_size : (step + 1) * batch_size])


def _same(a, b) -> bool:
    la = jax.tree.leaves(eqx.filter(a, eqx.is_array))
    lb = jax.tree.leaves(eqx.filter(b, eqx.is_array))
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


def test_stratified_uniforms_one_per_stratum():
    for seed in range(5):
        u = np.asarray(stratified_uniforms(jax.random.key(seed), 16))
        assert np.all((u >= 0) & (u < 1))
        assert np.array_equal(np.sort(np.floor(u * 16)), np.arange(16))
        # all share the offset u0 = u_0: u_i = (u_0 + i/B) mod 1
        np.testing.assert_allclose(np.mod(u - u[0], 1.0) * 16, np.arange(16), atol=1e-4)


def test_adaptive_state_is_updated_inside_the_step():
    """One jitted step updates the adaptive EMAs with exactly w(λ)ℓ = 2p(λ)L̂ of its batch."""
    setup = build(tiny_config(schedule="adaptive"))
    state0, trainer = setup.initial, setup.trainer
    x = _batch(setup)
    state1, metrics = run_steps(trainer, state0, jnp.asarray(x), jnp.arange(32, dtype=jnp.int32)[None])
    adaptive = setup.proposal.adaptive

    @eqx.filter_jit
    def recompute(state0, x):  # independently, from the step's key
        k_u, k_eps, _ = jax.random.split(jax.random.fold_in(state0.base_key, 0), 3)
        u = stratified_uniforms(k_u, 32)
        eps = jax.random.normal(k_eps, x.shape)
        logsnr, density = adaptive.sample(state0.proposal_state, u)
        losses = batch_losses(state0.model, setup.weighting, x, logsnr, eps, density)
        return adaptive.update(state0.proposal_state, logsnr, 2.0 * density * losses), losses

    expected, losses = recompute(state0, x)
    assert int(np.sum(state0.proposal_state.count)) == 0
    np.testing.assert_array_equal(state1.proposal_state.count, expected.count)
    np.testing.assert_allclose(state1.proposal_state.ema, expected.ema, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"][0], np.mean(losses), rtol=1e-5)
    # Stratified: the 32 draws fall in distinct bins' quantiles -> several bins hit at once.
    assert int(np.sum(state1.proposal_state.count)) >= 20
    # and the proposal is no longer uniform
    masses = np.asarray(adaptive.bin_masses(state1.proposal_state))
    assert masses.max() / masses.min() > 2


def _learned_config():
    """A learned schedule trained alone: the model's rate is negligible, so it stays the
    zero-output network (ε̂ = 0) and E[L̂²] has a closed form."""
    config = tiny_config(schedule="learned", schedule_args={"width": 16})
    return dataclasses.replace(config, optim=dataclasses.replace(config.optim, lr=1e-12, schedule_lr=3e-2))


def test_learned_schedule_gets_the_second_moment_gradient():
    """The step's schedule gradient equals jax.grad of mean(L̂²) in the schedule parameters
    (with the model fixed), and the model gradient equals jax.grad of mean(L̂)."""
    setup = build(_learned_config())
    state, trainer = setup.initial, setup.trainer
    x = _batch(setup)
    # A model with nonzero output, so that every gradient path is exercised.
    out = state.model.net.output.weight
    state = eqx.tree_at(
        lambda s: s.model.net.output.weight, state, 0.1 * jax.random.normal(jax.random.key(5), out.shape)
    )

    @eqx.filter_jit
    def both(state, x):
        g = trainer.gradients(state, x)
        k_u, k_eps, _ = jax.random.split(state.step_key(), 3)
        u = stratified_uniforms(k_u, 32)
        eps = jax.random.normal(k_eps, x.shape)

        def losses(model, schedule):
            logsnr = schedule.logsnr(u)
            density = -1.0 / schedule.dlogsnr_dt(u)
            return batch_losses(model, setup.weighting, x, logsnr, eps, density)

        sched = eqx.filter_grad(lambda s: jnp.mean(losses(state.model, s) ** 2))(state.proposal_state.schedule)
        model = eqx.filter_grad(lambda m: jnp.mean(losses(m, state.proposal_state.schedule)))(state.model)
        return g, sched, model

    g, direct_sched, direct_model = both(state, x)
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(direct_sched))
    for name in ("l1_weight", "l2_weight", "l2_bias", "l3_weight"):
        got, want = getattr(g.proposal_grads.schedule, name), getattr(direct_sched, name)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * scale, err_msg=name)
    for name in ("l2_weight", "l2_bias", "l3_weight"):  # the network's shape parameters
        assert float(jnp.max(jnp.abs(getattr(g.proposal_grads.schedule, name)))) > 1e-4 * scale, name
    for got, want in zip(jax.tree.leaves(g.model_grads), jax.tree.leaves(direct_model), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # With fixed endpoints l1's bias shifts γ, which the renormalisation removes: no gradient.
    assert abs(float(g.proposal_grads.schedule.l1_bias)) <= 1e-5 * scale
    # One step moves the schedule parameters.
    state1, _ = run_steps(trainer, state, x, jnp.arange(32, dtype=jnp.int32)[None])
    assert not np.array_equal(state1.proposal_state.schedule.l3_weight, state.proposal_state.schedule.l3_weight)
    assert int(state1.step) == 1


def test_learned_schedule_reduces_the_estimator_second_moment():
    r"""With ε̂ = 0, ℓ = ‖ε‖² ~ χ²₂ (E ℓ² = 8), so exactly
    $E[\hat L^2] = \tfrac14\cdot 8\int_0^1 w(\lambda(t))^2\lambda'(t)^2\,dt$: 100 steps of the learned
    schedule lower it from the linear schedule's value towards the optimum
    $2(\int w\,d\lambda)^2$ (proposal $\propto w$)."""
    setup = build(_learned_config())
    data = jnp.asarray(setup.dataset.model_data("train"))
    rng = np.random.default_rng(0)
    state = setup.initial
    for indices in rng.integers(0, len(data), (100, 1, 32)):
        state, _ = run_steps(setup.trainer, state, data, jnp.asarray(indices, jnp.int32))
    nodes, weights = np.polynomial.legendre.leggauss(400)
    t = jnp.asarray(0.5 * (nodes + 1.0), jnp.float32)

    @eqx.filter_jit
    def integrand(schedule):
        lam, slope = schedule.logsnr(t), schedule.dlogsnr_dt(t)
        return setup.weighting(lam) ** 2 * slope**2

    def second_moment(schedule):
        return 2.0 * float(np.sum(0.5 * weights * np.asarray(integrand(schedule), np.float64)))

    lam = np.linspace(-10.0, 10.0, 20001)
    w = ref.Sigmoid(2.0)(lam)
    linear = 2.0 * 20.0 * np.trapezoid(w**2, lam)
    optimal = 2.0 * np.trapezoid(w, lam) ** 2
    initial, trained = second_moment(setup.initial.proposal_state.schedule), second_moment(state.proposal_state.schedule)
    np.testing.assert_allclose(initial, linear, rtol=1e-3)  # starts as the linear schedule
    assert optimal < trained < initial - 0.15 * (initial - optimal)
    # the model barely moved (lr 1e-12): ε̂ is still 0 to ~1e-10, so the closed form applies
    assert float(jnp.max(jnp.abs(state.model.net.output.weight))) < 1e-9


def test_deterministic_given_the_seed():
    def run(seed):
        setup = build(tiny_config(seed=seed))
        data = jnp.asarray(setup.dataset.model_data("train"))
        idx = jnp.asarray(np.arange(3 * 32).reshape(3, 32), jnp.int32)
        return run_steps(setup.trainer, setup.initial, data, idx)

    (a, ma), (b, mb), (c, mc) = run(0), run(0), run(1)
    assert _same(a, b) and np.array_equal(ma["loss"], mb["loss"])
    assert not np.array_equal(ma["loss"], mc["loss"])
    assert not _same(a.model, c.model)


def test_loss_decreases_on_the_mixture():
    """300 steps halve the gap to the Bayes-optimal weighted loss (common random numbers)."""
    setup = build(tiny_config())
    data = jnp.asarray(setup.dataset.model_data("train"))
    rng = np.random.default_rng(0)
    state, losses = setup.initial, []
    for indices in rng.integers(0, len(data), (300, 1, 32)):
        state, metrics = run_steps(setup.trainer, state, data, jnp.asarray(indices, jnp.int32))
        losses.append(float(metrics["loss"][0]))
    x = jnp.asarray(setup.dataset.model_data("test"))
    n = x.shape[0]
    schedule = ex.Cosine(-10.0, 10.0)
    logsnr = schedule.logsnr((jnp.arange(n, dtype=jnp.float32) + 0.5) / n)
    density = schedule.density(logsnr)
    eps = jax.random.normal(jax.random.key(3), x.shape)
    p = setup.dataset.params
    mixture = GaussianMixture(*(jnp.asarray(p[k], jnp.float32) for k in ("weights", "means", "stds")))

    @eqx.filter_jit
    def batch_mean(model):
        return jnp.mean(batch_losses(model, setup.weighting, x, logsnr, eps, density))

    def mean_loss(model):
        return float(batch_mean(model))

    initial, final, ema = mean_loss(setup.initial.model), mean_loss(state.model), mean_loss(state.ema)
    optimal = mean_loss(mixture.eps)
    assert final < initial and ema < initial
    assert ema - optimal < 0.5 * (initial - optimal)
    assert np.mean(losses[-50:]) < np.mean(losses[:50])


# --- pre-flight ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, weighting, weighting_args, target",
    [
        ("adaptive", "sigmoid", {"bias": 2.0}, "eps"),
        ("learned", "elbo", {}, "v"),
        ("edm-lognormal", "edm-monotonic", {}, "F"),
        ("cosine", "eps-cosine-shifted", {"shift": 1.0}, "x"),
    ],
)
def test_preflight_passes(schedule, weighting, weighting_args, target):
    schedule_args = {"width": 16} if schedule == "learned" else {}
    config = tiny_config(
        schedule=schedule,
        schedule_args=schedule_args,
        weighting=weighting,
        weighting_args=weighting_args,
        target=target,
    )
    setup = build(config)
    report = run_preflight(
        setup.config,
        setup.dataset,
        setup.weighting,
        setup.proposal,
        setup.initial.proposal_state,
        num_points=128,
    )
    assert report.passed, str(report)
    assert len(report.checks) == 4 and all(c.count > 100 for c in report.checks)
    assert max(c.ratio for c in report.checks) < 0.5  # comfortably inside the tolerance
    check_or_raise(report)


class _BrokenSigmoid(ex.Sigmoid):
    """Sigmoid with a 0.1% error above λ = 5: a bug the pre-flight must catch."""

    def __call__(self, logsnr):
        w = super().__call__(logsnr)
        return jnp.where(jnp.asarray(logsnr) > 5.0, w * 1.001, w)


def test_preflight_refuses_a_broken_weighting(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.WEIGHTINGS, "sigmoid", registry.Entry(_BrokenSigmoid))
    config = tiny_config(schedule="cosine")
    setup = build(config)
    report = run_preflight(setup.config, setup.dataset, setup.weighting, setup.proposal, setup.initial.proposal_state)
    assert not report.passed
    failed = [c.name for c in report.checks if not c.passed]
    assert len(failed) == 2
    assert failed[0].startswith("weighting sigmoid") and failed[1].startswith("weighted loss")
    # a 1e-3 relative error is 10x the 1e-4 tolerance
    assert all(5.0 < c.ratio < 20.0 for c in report.checks if not c.passed)
    worst = next(c for c in report.checks if c.name.startswith("weighting"))
    assert 5.0 < float(worst.worst.split("logsnr=")[1]) <= 10.0
    with pytest.raises(PreflightError, match="Training refused"):
        check_or_raise(report)
    with pytest.raises(PreflightError, match="FAILED"):
        train(config, run_dir=tmp_path / "run", preflight=True, progress=False, echo=lambda _: None)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert "FAILED" in (tmp_path / "run" / "preflight.txt").read_text()


# --- non-finite guard ----------------------------------------------------------------------


def _nan_batch_run(policy, bad_step, k=3):
    """`k` steps in one dispatch on batches of 32; the batch of step `bad_step` (0-based)
    has a NaN in one example. **Returns:** `(setup, data, indices, state, metrics)`."""
    setup = build(tiny_config(nonfinite=policy))
    data = np.array(setup.dataset.model_data("train"))
    data[bad_step * 32 + 7, 1] = np.nan
    indices = jnp.asarray(np.arange(k * 32).reshape(k, 32), jnp.int32)
    state, metrics = run_steps(setup.trainer, setup.initial, jnp.asarray(data), indices)
    return setup, jnp.asarray(data), indices, state, metrics


def test_nonfinite_step_changes_no_parameter():
    """A NaN in the batch: the jitted step returns model, EMA, optimiser and adaptive state
    bit-identical to before it (only the step counter advances), and flags it."""
    setup, data, indices, state, metrics = _nan_batch_run("skip", bad_step=0, k=1)
    assert np.asarray(metrics["nonfinite"]).tolist() == [1] and not np.isfinite(metrics["loss"][0])
    assert int(state.step) == 1
    for name in ("model", "ema", "opt_state", "proposal_state", "key"):
        assert _same(getattr(state, name), getattr(setup.initial, name)), name
    # skip: the next steps in the same dispatch train normally
    setup, data, indices, state, metrics = _nan_batch_run("skip", bad_step=1)
    assert np.asarray(metrics["nonfinite"]).tolist() == [0, 1, 0] and int(state.step) == 3
    one, _ = run_steps(setup.trainer, setup.initial, data, indices[:1])
    two, _ = run_steps(setup.trainer, one, data, indices[1:2])  # the bad step alone
    assert _same(two.model, one.model) and _same(two.opt_state, one.opt_state) and int(two.step) == 2
    three, _ = run_steps(setup.trainer, two, data, indices[2:3])
    assert _same(state, three)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(eqx.filter(state, eqx.is_inexact_array)))


def test_overflowing_gradient_square_is_nonfinite(monkeypatch):
    """Finite loss and gradients whose squares overflow float32 (|g| = 1e20 > 1.8e19): the
    update is garbage (here global-norm clipping scales g by 1/inf = 0; without clipping
    Adam's second moment would overflow), so the guard, which checks ‖g‖² rather than each
    parameter, must flag the step and keep the state. At |g| = 1e15 the step goes through."""
    setup = build(tiny_config(nonfinite="skip"))
    data = jnp.asarray(setup.dataset.model_data("train"))
    gradients = Trainer.gradients

    def run(scale):
        def scaled(self, state, x):
            g = gradients(self, state, x)
            return g._replace(model_grads=jax.tree.map(lambda leaf: leaf * scale, g.model_grads))

        monkeypatch.setattr(Trainer, "gradients", scaled)
        jax.clear_caches()  # run_steps' cache does not see the patched method
        return run_steps(setup.trainer, setup.initial, data, jnp.arange(32, dtype=jnp.int32)[None])

    try:
        state, metrics = run(1e20)
        assert np.isfinite(metrics["loss"][0]) and np.asarray(metrics["nonfinite"]).tolist() == [1]
        assert _same(state.model, setup.initial.model) and _same(state.opt_state, setup.initial.opt_state)
        state, metrics = run(1e15)
        assert np.asarray(metrics["nonfinite"]).tolist() == [0]
        leaves = jax.tree.leaves(eqx.filter(state, eqx.is_inexact_array))
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    finally:  # no compiled step with patched gradients may outlive this test
        monkeypatch.undo()
        jax.clear_caches()


def test_nonfinite_stop_keeps_the_state_before_the_bad_step():
    """stop: the dispatch returns the state after the last good step, step counter included,
    even when good steps follow the bad one in the same `lax.scan`."""
    setup, data, indices, state, metrics = _nan_batch_run("stop", bad_step=1)
    assert np.asarray(metrics["nonfinite"])[1] == 1
    one, _ = run_steps(setup.trainer, setup.initial, data, indices[:1])
    assert int(state.step) == 1 and _same(state, one)


class _NaNBandSigmoid(ex.Sigmoid):
    """Sigmoid that is NaN for λ in (2.0, 2.1): about one training step in six hits it."""

    def __call__(self, logsnr):
        w = super().__call__(logsnr)
        lam = jnp.asarray(logsnr)
        return jnp.where((lam > 2.0) & (lam < 2.1), jnp.nan, w)


def test_nonfinite_policies_in_the_training_loop(monkeypatch, tmp_path):
    """stop: `TrainingDiverged` names the step and a checkpoint of the last good state, which
    equals a clean run to that step; resuming with `train.nonfinite=skip` then finishes the
    run, counts the skipped steps in metrics.jsonl and ends as a run that skipped throughout."""
    monkeypatch.setitem(registry.WEIGHTINGS, "sigmoid", registry.Entry(_NaNBandSigmoid))
    kwargs = dict(preflight=False, progress=False, evaluate=False, echo=lambda _: None)
    stop = tiny_config(steps=30, nonfinite="stop")
    skip = tiny_config(steps=30, nonfinite="skip")
    with pytest.raises(TrainingDiverged, match=r"non-finite at step (\d+).*train.nonfinite=skip") as info:
        train(stop, run_dir=tmp_path / "stop", **kwargs)
    bad = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    path = tmp_path / "stop" / "checkpoints" / f"ckpt-{bad - 1:08d}.eqx"
    assert str(path) in str(info.value) and 1 < bad < 30
    # The checkpoint holds the state before the bad step: a run stopped there matches it.
    clean = train(skip, run_dir=tmp_path / "clean", stop_after=bad - 1, **kwargs)
    saved = load_checkpoint(path, clean.state)
    assert int(saved.step) == bad - 1 and _same(saved, clean.state)
    # Resume with the skip policy (a resumable change): finishes, counts what it skipped.
    resumed = train(skip, run_dir=tmp_path / "stop", **kwargs)
    full = train(skip, run_dir=tmp_path / "skip", **kwargs)
    assert int(resumed.state.step) == 30 and _same(resumed.state, full.state)
    skipped = [r["skipped"] for r in full.rows]
    assert sum(skipped) >= 2 and [r["skipped"] for r in resumed.rows] == skipped
    assert all(np.isfinite(r["loss"]) for r in full.rows)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(eqx.filter(full.state, eqx.is_inexact_array)))


class _NaNSigmoid(ex.Sigmoid):
    """Sigmoid that is NaN everywhere: every step is non-finite."""

    def __call__(self, logsnr):
        return jnp.full_like(super().__call__(logsnr), jnp.nan)


def test_skip_policy_gives_up_after_a_run_of_nonfinite_steps(monkeypatch, tmp_path):
    """skip: `fit.MAX_CONSECUTIVE_SKIPS` non-finite steps in a row raise `TrainingDiverged`
    (the run does not finish and evaluate an untrained model), with the state saved."""
    monkeypatch.setitem(registry.WEIGHTINGS, "sigmoid", registry.Entry(_NaNSigmoid))
    monkeypatch.setattr(fit, "MAX_CONSECUTIVE_SKIPS", 4)
    config = tiny_config(steps=30, nonfinite="skip")
    with pytest.raises(TrainingDiverged, match=r"Every step from 1 to 4 .*diverged.*saved in"):
        train(config, run_dir=tmp_path / "run", preflight=False, progress=False, evaluate=False, echo=lambda _: None)
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-00000004.eqx", build(config).initial)
    assert _same(saved.model, build(config).initial.model)
