r"""Pre-flight check: before training, the configured objective evaluated by `eqx_impl` on the
training device must match the float64 `reference` package.

At `num_points` drawn points it compares (eqx float32, on the default JAX device, jitted
like the training step, vs reference float64 on the same rounded inputs):

1. the weighting $w(\lambda)$ on a stratified grid of $[\lambda_{\min}, \lambda_{\max}]$;
2. the proposal: $\lambda(u)$ and $p(\lambda)$ from stratified $u$ (a fixed schedule against its
   reference twin; `adaptive` after a few identical updates of both states; `learned`
   against a float64 NumPy evaluation of VDM's network formula with the same weights);
3. the weighted loss $\tfrac12\,w/p\cdot\ell$ per example, through the training step's own
   `batch_losses`, on training examples, with a random probe network predicting the
   configured target (wrapped in `EpsModel` on the eqx side, re-derived in NumPy on the
   reference side).

Tolerances (the equivalence suite's float32 bounds with a 5x margin): relative 1e-4 for
$w$, $p$ and the loss; absolute $10^{-4}\max(1, |\lambda|)$ for $\lambda$. Values too small
for float32 to hold as normal numbers are skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

import eqx_impl as ex
import reference as ref
from eqx_impl.data import Dataset
from eqx_impl.learned import Learned
from eqx_impl.models.precision import FULL_FLOAT32
from eqx_impl.proposals import AbstractProposal, AdaptiveProposal, LearnedProposal
from eqx_impl.train.config import Config
from eqx_impl.train.registry import build_schedule, build_weighting
from eqx_impl.train.step import batch_losses

__all__ = ["Check", "PreflightError", "PreflightReport", "check_or_raise", "run_preflight"]

RTOL = 1e-4
LOGSNR_ATOL = 1e-4


class PreflightError(RuntimeError):
    """The eqx objective disagrees with the reference; the message is the full report."""


@dataclass
class Check:
    """One comparison: `ratio` is max over points of |eqx − ref| / tolerance (≤ 1 passes)."""

    name: str
    ratio: float
    worst: str
    count: int

    @property
    def passed(self) -> bool:
        return bool(self.ratio <= 1.0)


@dataclass
class PreflightReport:
    device: str
    num_points: int
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def __str__(self) -> str:
        lines = [
            f"pre-flight: eqx_impl (float32, {self.device}) vs reference (float64), "
            f"{self.num_points} points; error/tolerance per check (<= 1 passes):"
        ]
        for c in self.checks:
            status = "ok" if c.passed else "FAILED"
            detail = "" if c.passed else f"  worst: {c.worst}"
            lines.append(f"  {c.name:<46} {c.ratio:10.3g}  {status}{detail}")
        return "\n".join(lines)


def _compare(name, actual, expected, *, rtol=0.0, atol=None, where=None) -> Check:
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if atol is None:  # relative only: skip values float32 cannot hold as normal numbers
        tol = rtol * np.abs(expected)
        mag = np.abs(expected)
        mask = (mag > np.finfo(np.float32).tiny * 1e4) & (mag < np.finfo(np.float32).max / 1e4)
    else:
        tol = atol + rtol * np.abs(expected)
        mask = np.ones(expected.shape, bool)
    err = np.abs(actual - expected)
    ratio = np.where(mask, err / np.maximum(tol, np.finfo(np.float64).tiny), 0.0)
    ratio = np.where(np.isfinite(actual) | ~mask, ratio, np.inf)
    i = int(np.argmax(ratio))
    at = "" if where is None else f" at {where[i]}"
    worst = f"eqx {actual.flat[i]:.8g} vs reference {expected.flat[i]:.8g}{at}"
    return Check(name, float(ratio.flat[i]), worst, int(mask.sum()))


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _stratified(num: int, rng: np.random.Generator) -> np.ndarray:
    """float32 uniforms in [0, 1), one per stratum, as float64 values."""
    u = (np.arange(num) + rng.random(num)) / num
    return _f64(np.minimum(u, np.nextafter(1.0, 0.0)).astype(np.float32))


# --- the probe network, identical in both packages -----------------------------------------


def _probe_params(dim: int, hidden: int, rng: np.random.Generator):
    sizes = [dim + 2, hidden, dim]
    return [
        (rng.normal(size=(m, n)) / math.sqrt(m), 0.1 * rng.normal(size=n))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


class _ProbeNet(eqx.Module):
    """A random tanh MLP on flattened data and features of λ (the eqx twin of `_probe_numpy`)."""

    layers: list

    def __call__(self, z, logsnr, *, key=None):
        del key
        lam = jnp.asarray(logsnr, z.dtype)
        h = jnp.concatenate([z.reshape(-1), jnp.stack([jnp.tanh(lam / 10.0), jnp.sin(lam / 4.0)])])
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = jnp.tanh(h)
        return h.reshape(z.shape)


def _probe_numpy(params, z, logsnr):
    h = np.concatenate([z.reshape(-1), [np.tanh(logsnr / 10.0), np.sin(logsnr / 4.0)]])
    for k, (w, b) in enumerate(params):
        h = h @ w + b
        if k < len(params) - 1:
            h = np.tanh(h)
    return h.reshape(z.shape)


def _reference_eps_model(params, target, sigma_data, normalize_input):
    """`EpsModel(probe, target, sigma_data, normalize_input)` in float64 NumPy, from the formulas."""

    def eps_model(z, logsnr):
        z_in = z
        if normalize_input:
            d = special.expit(-logsnr) + sigma_data**2 * special.expit(logsnr)
            z_in = z / np.sqrt(d)
        prediction = _probe_numpy(params, z_in, logsnr)
        return ref.eps_from_prediction(target, prediction, z, logsnr, sigma_data)

    return eps_model


# --- the learned schedule in NumPy ---------------------------------------------------------


def _learned_reference(schedule: Learned, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""$\lambda(t)$ and $p = -1/\lambda'(t)$ of VDM's network in float64, with the analytic
    derivative $\gamma'(t) = |w_1| + \sum_j |w_{3j}|\,2\,\mathrm{sigmoid}'(h_j)\,|w_{2j}|$."""
    w1, b1 = abs(float(schedule.l1_weight)), float(schedule.l1_bias)
    w2, b2 = np.abs(_f64(schedule.l2_weight)), _f64(schedule.l2_bias)
    w3 = np.abs(_f64(schedule.l3_weight))

    def gamma(t):
        h = w2 * np.asarray(t)[..., None] + b2
        return w1 * t + b1 + (2.0 * (special.expit(h) - 0.5)) @ w3, h

    g, h = gamma(t)
    s = special.expit(h)
    dg = w1 + (2.0 * s * (1.0 - s) * w2) @ w3
    if schedule.fixed_endpoints:
        g0, g1 = gamma(np.float64(0.0))[0], gamma(np.float64(1.0))[0]
        lo, hi = schedule.init_logsnr_min, schedule.init_logsnr_max
        logsnr = hi + (g - g0) / (g1 - g0) * (lo - hi)
        slope = dg / (g1 - g0) * (lo - hi)
    else:
        logsnr, slope = -g, -dg
    return logsnr, -1.0 / slope


# --- the check -----------------------------------------------------------------------------


@eqx.filter_jit
def _eqx_sample(proposal, state, u):
    return proposal.sample(state, u)


@eqx.filter_jit
def _eqx_weighting(weighting, logsnr):
    return weighting(logsnr)


@eqx.filter_jit
def _eqx_losses(model, weighting, x, logsnr, eps, density):
    return batch_losses(model, weighting, x, logsnr, eps, density)


@eqx.filter_jit
def _eqx_update(proposal, state, logsnr, values):
    return proposal.update(state, logsnr, values, None)


def _describe_weighting(config: Config) -> str:
    o = config.objective
    args = ", ".join(f"{k}={v}" for k, v in o.weighting_args.items())
    return f"{o.weighting}({args})"


def run_preflight(
    config: Config,
    dataset: Dataset,
    weighting,
    proposal: AbstractProposal,
    proposal_state,
    *,
    num_points: int = 256,
    seed: int = 0,
) -> PreflightReport:
    """Compare the configured weighting, proposal and weighted loss with the reference.

    `weighting`, `proposal` and `proposal_state` are the eqx objects training will use;
    the reference objects are built from `config` (a resolved config: the log-SNR range
    and `sigma_data` filled in). It checks the objective's math, not the network's
    rounding: it runs at full float32 precision (`jax.default_matmul_precision("highest")`,
    no TF32, float32 probe network) whatever `train.precision` says.

    **Returns:** a `PreflightReport` (`.passed`, printable).
    """
    with FULL_FLOAT32.context():
        return _run_preflight(config, dataset, weighting, proposal, proposal_state, num_points, seed)


def _run_preflight(config, dataset, weighting, proposal, proposal_state, num_points, seed) -> PreflightReport:
    rng = np.random.default_rng(seed)
    report = PreflightReport(jax.devices()[0].platform, num_points)
    ref_weighting, check = _check_weighting(config, weighting, rng, num_points)
    report.checks.append(check)
    draws, checks = _check_proposal(config, proposal, proposal_state, ref_weighting, rng, num_points)
    report.checks.extend(checks)
    report.checks.append(_check_loss(config, dataset, weighting, ref_weighting, draws, rng))
    return report


def _check_weighting(config, weighting, rng, num_points):
    """1. The weighting on a stratified grid of the interval (endpoints included).

    **Returns:** `(the reference weighting, its Check)`.
    """
    o = config.objective
    lo, hi = float(o.logsnr_min), float(o.logsnr_max)
    grid = lo + (hi - lo) * _stratified(num_points, rng)
    grid[0], grid[-1] = lo, hi
    grid = _f64(grid.astype(np.float32))
    ref_weighting = build_weighting(o.weighting, o.weighting_args, (lo, hi), package="reference")
    w_eqx = _eqx_weighting(weighting, jnp.asarray(grid, jnp.float32))
    where = [f"logsnr={v:.6g}" for v in grid]
    return ref_weighting, _compare(
        f"weighting {_describe_weighting(config)}", w_eqx, ref_weighting(grid), rtol=RTOL, where=where
    )


def _reference_draws(config, proposal, state, ref_weighting, rng, u):
    """The proposal's state after identical updates on both sides (adaptive), and the
    reference's `(logsnr, density)` at `u`, or `(logsnr, None)` for a fixed schedule, whose
    reference density is then taken at the λ eqx drew.

    **Returns:** `(eqx state, ref_logsnr, ref_density, ref_schedule or None)`.
    """
    if isinstance(proposal, LearnedProposal):
        return (state, *_learned_reference(state.schedule, u), None)
    ref_schedule = build_schedule(config, package="reference")
    if not isinstance(proposal, AdaptiveProposal):
        return state, ref_schedule.logsnr(u), None, ref_schedule
    lo, hi = proposal.logsnr_range
    ref_state = ref_schedule.init()
    for _ in range(3):  # identical synthetic updates so the proposal is not uniform
        lam = _f64((lo + (hi - lo) * rng.random(len(u))).astype(np.float32))
        values = _f64((ref_weighting(lam) * (1.0 + 63.0 * special.expit(-lam))).astype(np.float32))
        ref_state = ref_schedule.update(ref_state, lam, values)
        state = _eqx_update(proposal, state, jnp.asarray(lam, jnp.float32), jnp.asarray(values, jnp.float32))
    return (state, *ref_schedule.sample(ref_state, u), None)


def _check_proposal(config, proposal, proposal_state, ref_weighting, rng, num_points):
    """2. The proposal: λ(u) and p(λ) at stratified u.

    **Returns:** `((logsnr, density, ref_density), [Check, Check])`.
    """
    u = _stratified(num_points, rng)
    state, ref_logsnr, ref_density, ref_schedule = _reference_draws(
        config, proposal, proposal_state, ref_weighting, rng, u
    )
    logsnr, density = (np.asarray(v, np.float64) for v in _eqx_sample(proposal, state, jnp.asarray(u, jnp.float32)))
    if ref_density is None:
        ref_density = ref_schedule.density(logsnr)  # pyright: ignore[reportOptionalMemberAccess]  # a fixed schedule comes with its density None
    name, where = config.objective.schedule, [f"u={v:.8g}" for v in u]
    atol = LOGSNR_ATOL * np.maximum(1.0, np.abs(ref_logsnr))
    checks = [
        _compare(f"proposal {name}: logsnr(u)", logsnr, ref_logsnr, atol=atol, where=where),
        _compare(f"proposal {name}: density", density, ref_density, rtol=RTOL, where=where),
    ]
    return (logsnr, density, ref_density), checks


def _check_loss(config, dataset, weighting, ref_weighting, draws, rng) -> Check:
    """3. The weighted loss through the training step's loss function, with a random probe
    network predicting the configured target. **Returns:** the `Check`."""
    o, (logsnr, density, ref_density) = config.objective, draws
    x_all = dataset.model_data("train")
    x = np.asarray(x_all[rng.integers(0, len(x_all), len(logsnr))], np.float32)
    eps = rng.standard_normal(x.shape).astype(np.float32)
    params = _probe_params(math.prod(x.shape[1:]), 32, rng)
    probe = _ProbeNet([(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)) for w, b in params])
    model = ex.EpsModel(probe, o.target, config.model.sigma_data, config.model.normalize_input)
    f32 = [jnp.asarray(v, jnp.float32) for v in (x, logsnr, eps, density)]
    losses = _eqx_losses(model, weighting, *f32)
    params32 = [(_f64(np.float32(w)), _f64(np.float32(b))) for w, b in params]
    ref_model = _reference_eps_model(params32, o.target, model.sigma_data, model.normalize_input)
    ref_losses = np.array(
        [
            ref.weighted_loss(ref_model, _f64(x[i]), logsnr[i], _f64(eps[i]), ref_weighting, ref_density[i])
            for i in range(len(logsnr))
        ]
    )
    where = [f"logsnr={v:.6g}" for v in logsnr]
    return _compare(f"weighted loss (target {o.target}, probe network)", losses, ref_losses, rtol=RTOL, where=where)


def check_or_raise(report: PreflightReport) -> PreflightReport:
    """Raise `PreflightError` with the report when any check fails. **Returns:** the report."""
    if not report.passed:
        raise PreflightError(
            f"{report}\nTraining refused: eqx_impl disagrees with the float64 reference for this "
            "objective. Fix the weighting/schedule/loss (or the config), or pass --no-preflight "
            "to train anyway."
        )
    return report
