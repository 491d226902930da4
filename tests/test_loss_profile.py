"""The loss per noise level (`eqx_impl.evaluation.loss_profile`, `evaluate --metrics
loss_profile`): against closed forms for Gaussian data with its Bayes-optimal ε̂, against the
VDM bound's diffusion term (`negative_elbo`), and end to end through `evaluate_model` and the CLI.

Statistical checks use fixed seeds and 4 standard errors (two-sided normal tail 6e-5 per
check); the trapezoid bias of the grids used here is below 1e-5 of the areas (checked on
the exact curve where it matters)."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
from scipy import integrate, optimize, special

import eqx_impl as E
from eqx_impl import evaluation as ev
from eqx_impl.evaluation.estimate import Estimate
from eqx_impl.losses import prior_kl
from tests.nets import init_params, jax_mlp

KEY = jax.random.key(7)
D, S2, LMIN, LMAX = 4, 0.5, -10.0, 10.0


def _gaussian_x(num: int, seed: int = 1) -> np.ndarray:
    return np.asarray(E.GaussianData(S2, D).sample(num, key=jax.random.key(seed)))


def test_loss_profile_matches_gaussian_closed_form():
    """x ~ N(0, s² I_d) with the Bayes-optimal ε̂: E ℓ(λ) = d·sigmoid(λ + ln s²) at every grid
    point (within 4 standard errors), ½∫ℓ dλ = (d/2)[softplus(λmax + ln s²) − softplus(λmin + ln s²)]
    and, for Sigmoid(2), ½∫w ℓ dλ by scipy quadrature, each within 4 standard errors."""
    gauss, weighting = E.GaussianData(S2, D), E.Sigmoid(2.0)
    profile = ev.loss_profile(
        gauss.eps,
        _gaussian_x(3000),
        key=KEY,
        logsnr_min=LMIN,
        logsnr_max=LMAX,
        weighting=weighting,
        num_logsnr=41,
        batch_size=4096,
    )
    exact = D * special.expit(profile.logsnr + math.log(S2))
    assert np.all(np.abs(profile.loss - exact) < 4 * profile.loss_stderr)
    assert np.all(profile.loss_stderr < 0.05 * exact + 1e-3)  # the check above has teeth
    diffusion = 0.5 * D * (np.logaddexp(0, LMAX + math.log(S2)) - np.logaddexp(0, LMIN + math.log(S2)))
    assert abs(profile.diffusion.mean - diffusion) < 4 * profile.diffusion.stderr
    assert profile.diffusion_bpd.mean == pytest.approx(profile.diffusion.mean / (D * math.log(2)), rel=1e-12)

    def w(lam):
        return special.expit(-lam + 2.0)

    weighted = integrate.quad(lambda lam: 0.5 * w(lam) * D * special.expit(lam + math.log(S2)), LMIN, LMAX)[0]
    assert abs(profile.weighted.mean - weighted) < 4 * profile.weighted.stderr
    assert np.allclose(profile.weighting, w(profile.logsnr), rtol=1e-6)
    np.testing.assert_allclose(profile.weighted_integrand_bpd, profile.weighting * profile.elbo_integrand_bpd)
    for which in ("elbo", "weighted", "weighting"):
        assert np.trapezoid(profile.density(which), profile.logsnr) == pytest.approx(1.0, rel=1e-12)
    # Sigmoid(2) moves the objective's mass to noisier levels than the ELBO's
    assert profile.median_logsnr("weighted") < profile.median_logsnr("elbo") - 3.0


def test_median_logsnr_of_the_exact_curve_matches_closed_form():
    """On the exact Gaussian curve ℓ = d·sigmoid(λ + ln s²), the median m of ℓ over λ solves
    softplus(m + ln s²) = ½[softplus(λmax + ln s²) + softplus(λmin + ln s²)] (brentq); the
    cumulative trapezoid on 401 points agrees to 1e-3."""
    grid = np.linspace(LMIN, LMAX, 401)
    exact = D * special.expit(grid + math.log(S2))
    profile = ev.LossProfile(grid, exact, np.zeros_like(grid), None, Estimate(0.0, 0.0), None, D, 1)
    sp = lambda lam: np.logaddexp(0, lam + math.log(S2))  # noqa: E731
    target = 0.5 * (sp(LMAX) + sp(LMIN))
    median = optimize.brentq(lambda m: sp(m) - target, LMIN, LMAX)
    assert profile.median_logsnr("elbo") == pytest.approx(median, abs=1e-3)
    with pytest.raises(ValueError, match="needs a weighting"):
        profile.density("weighted")


def test_loss_profile_area_matches_negative_elbo_diffusion_bpd():
    """A random MLP ε-model on Gaussian data: the area under the ELBO integrand equals the
    diffusion bits/dim of the VDM bound (`negative_elbo`, Cosine importance distribution),
    two independent estimates within 4 combined standard errors. The bound's per-example
    diffusion term is its total minus the prior KL and the (constant) continuous recon term."""
    x = _gaussian_x(1000, seed=3)
    model = jax_mlp(init_params(D, hidden=16, seed=4))
    profile = ev.loss_profile(model, x, key=KEY, logsnr_min=LMIN, logsnr_max=LMAX, num_logsnr=48, batch_size=1000)
    nelbo = ev.negative_elbo(model, x, key=jax.random.key(8), schedule=E.Cosine(LMIN, LMAX), num_t=32, batch_size=1000)
    recon = 0.5 * D * (1 + math.log(2 * math.pi) - LMAX)
    prior = np.asarray(jax.vmap(prior_kl, (0, None))(jnp.asarray(x), jnp.float32(LMIN)), np.float64)
    per_example = (nelbo.per_example - recon - prior) / (D * math.log(2))
    bound = ev.estimate(per_example)
    assert bound.mean == pytest.approx(nelbo.to_dict()["diffusion_bpd"], rel=1e-5)
    ours = profile.diffusion_bpd
    assert abs(ours.mean - bound.mean) < 4 * math.hypot(ours.stderr, bound.stderr)
    assert math.hypot(ours.stderr, bound.stderr) < 0.02 * bound.mean  # an 8% window at most
    # this random network's loss is far above the Bayes floor: not the Gaussian case again
    floor = 0.5 * (np.logaddexp(0, LMAX + math.log(S2)) - np.logaddexp(0, LMIN + math.log(S2))) / math.log(2)
    assert ours.mean > 1.5 * floor


def test_loss_profile_does_not_depend_on_batch_size():
    x = _gaussian_x(37)
    model = jax_mlp(init_params(D, hidden=8, seed=5))
    a = ev.loss_profile(model, x, key=KEY, logsnr_min=LMIN, logsnr_max=LMAX, num_logsnr=9, batch_size=8)
    b = ev.loss_profile(model, x, key=KEY, logsnr_min=LMIN, logsnr_max=LMAX, num_logsnr=9, batch_size=64)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)
    assert a.num_examples == 37 and a.num_dims == D


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"logsnr_min": 5.0, "logsnr_max": -5.0}, "logsnr_min < logsnr_max"),
        ({"num_logsnr": 2}, "num_logsnr must be an integer >= 3"),
        ({"data": np.zeros((4, 2), np.int32)}, "model's real values"),
        ({"data": np.zeros(4, np.float32)}, r"shape \(N, \*dims\)"),
    ],
)
def test_loss_profile_rejects_bad_input(kwargs, match):
    args = {"data": np.zeros((4, 2), np.float32), "logsnr_min": -1.0, "logsnr_max": 1.0, **kwargs}
    data = args.pop("data")
    with pytest.raises(ValueError, match=match):
        ev.loss_profile(lambda z, lam: z, data, key=KEY, **args)


def test_evaluate_model_writes_loss_profile_png_and_json(tmp_path):
    """`evaluate_model(metrics=["loss_profile"])` on the tiny GMM config with an untrained
    network, whose output layer starts at zero: ε̂ = 0, so ℓ = ‖ε‖² with E ℓ = D = 2 at every
    level, ½∫ℓ dλ = D(λmax − λmin)/2 and ½∫wℓ dλ = (D/2)∫w dλ (scipy quadrature of the run's
    Sigmoid(2)), each within 4 standard errors; the curves are JSON, the PNG an image."""
    from eqx_impl.train import build
    from eqx_impl.train.evaluate import PROFILE_POINTS, evaluate_model
    from tests.train_helpers import tiny_config

    setup = build(tiny_config(weighting="sigmoid", weighting_args={"bias": 2.0}))
    config, dataset, weighting, model = setup.config, setup.dataset, setup.weighting, setup.initial.model
    lo, hi = config.objective.interval
    out = evaluate_model(config, dataset, model, weighting, metrics=["loss_profile"], out_dir=tmp_path)
    curves = out["loss_profile"]
    assert len(curves["logsnr"]) == PROFILE_POINTS and curves["num_examples"] == len(dataset.test)
    loss, se = np.asarray(curves["loss"]), np.asarray(curves["loss_stderr"])
    assert np.all(np.abs(loss - 2.0) < 4 * se)
    bits = 2 * math.log(2)
    diffusion = 0.5 * 2 * (hi - lo) / bits
    assert abs(out["loss_profile_diffusion_bpd"] - diffusion) < 4 * out["loss_profile_diffusion_bpd_stderr"]
    weighted = integrate.quad(lambda lam: special.expit(-lam + 2.0), lo, hi)[0] / bits
    assert abs(out["loss_profile_weighted_bpd"] - weighted) < 4 * out["loss_profile_weighted_bpd_stderr"]
    assert json.loads(json.dumps(out)) == out
    image = matplotlib.image.imread(out["loss_profile_png"])
    assert image.ndim == 3 and image.shape[0] > 400 and image.std() > 0.05


def test_cli_evaluate_loss_profile(tmp_path, capsys):
    """`python -m eqx_impl evaluate --run-dir RUN --metrics loss_profile` after a tiny run:
    RUN/loss_profile.png and the numbers in RUN/evaluation.json; the curves stay off the
    printed line."""
    from eqx_impl.cli import main
    from eqx_impl.train import train
    from tests.train_helpers import tiny_config

    run = tmp_path / "run"
    train(tiny_config(steps=10, checkpoint_every=10), run_dir=run, evaluate=False, progress=False)
    assert main(["evaluate", "--run-dir", str(run), "--metrics", "loss_profile", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "loss_profile_diffusion_bpd=" in printed and "'logsnr'" not in printed
    record = json.loads((run / "evaluation.json").read_text())
    assert record["loss_profile_png"] == str(run / "loss_profile.png") and (run / "loss_profile.png").is_file()
    assert 0 < record["loss_profile_diffusion_bpd"] and 0 < record["loss_profile_weighted_bpd"]
    assert len(record["loss_profile"]["weighted_density"]) == len(record["loss_profile"]["logsnr"])
