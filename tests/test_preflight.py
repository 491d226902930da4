"""The pre-flight's ε-model twin and its loss tolerance (the loss's condition number).

At $\\lambda$ near $-15$ every target but `"eps"` gives $\\hat\\epsilon = \\epsilon + O(\\alpha)$
from terms of size 1, so float32's rounding of $z$ moves the loss by ~$10^{-7}/\\alpha$
relative; a fixed $10^{-4}$ tolerance refused these correct objectives (error/tolerance up to
17.8 over seeds 0-19 of `configs/gmm.yaml`), the condition-number tolerance passes them and
still refuses a wrong weighting or a wrong ε-model.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import eqx_impl as ex
import reference as ref
from eqx_impl.train import build, load_config, run_preflight
from eqx_impl.train import preflight as pf


def _gmm_setup(schedule: str, target: str):
    """`configs/gmm.yaml` (λ in [-15, 15]) with a small training set and the given schedule and target."""
    overrides = [f"objective.schedule={schedule}", f"objective.target={target}", "data.args.num_train=256"]
    if schedule != "adaptive":
        overrides.append("objective.schedule_args={}")
    return build(load_config("configs/gmm.yaml", overrides))


def _preflight(setup, seed=0):
    return run_preflight(
        setup.config, setup.dataset, setup.weighting, setup.proposal, setup.initial.proposal_state, seed=seed
    )


def test_twin_of_eps_model_is_the_reference_eps_model():
    probe = ex.ProbeNet(pf._probe_layers(2, 8, np.random.default_rng(0)))
    model = ex.EpsModel(probe, "F", 0.7)
    twin = pf.twin(model)
    assert isinstance(twin, ref.EpsModel) and isinstance(twin.net, ref.ProbeNet)
    assert (twin.target, twin.sigma_data, twin.normalize_input) == ("F", 0.7, True)
    for (w, b), (tw, tb) in zip(probe.layers, twin.net.layers, strict=True):
        assert tw.dtype == np.float64 and np.array_equal(tw, np.asarray(w)) and np.array_equal(tb, np.asarray(b))
    z = np.array([0.3, -1.2], np.float32)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(z), np.float32(-2.0))), twin(z, -2.0), rtol=1e-5)


def test_loss_condition_grows_like_exp_minus_half_logsnr():
    """κ ≥ 1; for `"v"` it is ~e^{-λ/2} at low λ (ε̂ = ε + O(α)), for `"eps"` O(1) there."""
    rng = np.random.default_rng(1)
    probe = ex.ProbeNet(pf._probe_layers(2, 8, rng))
    x, eps = rng.normal(size=2), rng.normal(size=2)
    v, e = (pf.twin(ex.EpsModel(probe, t)) for t in ("v", "eps"))
    kappa_v = np.array([pf._loss_condition(v, x, lam, eps) for lam in (-14.0, -10.0, 0.0, 10.0)])
    kappa_eps = pf._loss_condition(e, x, -14.0, eps)
    assert np.all(kappa_v >= 1.0) and kappa_eps >= 1.0
    assert 0.1 < kappa_v[0] * np.exp(-7.0) < 10.0 and 0.1 < kappa_v[1] * np.exp(-5.0) < 10.0
    assert kappa_v[2] < 10.0 and kappa_v[3] < 10.0 and kappa_eps < 10.0


@pytest.mark.parametrize(("schedule", "target", "seed"), [("learned", "v", 3), ("learned", "F", 1), ("linear", "u", 0)])
def test_preflight_passes_correct_objectives_near_logsnr_min(schedule, target, seed):
    """Each failed with the fixed 1e-4 loss tolerance (error/tolerance 2.31, 10.9, 1.77)."""
    report = _preflight(_gmm_setup(schedule, target), seed=seed)
    assert report.passed, str(report)
    assert max(c.ratio for c in report.checks) < 0.1, str(report)


class _BrokenEpsModel(ex.EpsModel):
    """ε̂ 0.1% too large: a conversion bug only the loss check can see."""

    def __call__(self, z, logsnr, **kwargs):
        return 1.001 * super().__call__(z, logsnr, **kwargs)


def test_preflight_refuses_a_broken_eps_model(monkeypatch):
    """The condition-number tolerance is tight where nothing cancels: the bug fails the loss
    check, and only it (its twin is the correct reference `EpsModel`)."""
    setup = _gmm_setup("learned", "v")
    monkeypatch.setattr(ex, "EpsModel", _BrokenEpsModel)
    report = _preflight(setup, seed=3)
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["weighted loss (target v, probe network)"], str(report)
    assert failed[0].ratio > 3.0
