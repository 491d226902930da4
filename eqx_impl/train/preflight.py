r"""Pre-flight check: before training, the configured objective evaluated by `eqx_impl` on the
training device must match the float64 `reference` package.

The reference side is the *twin* of each eqx object training will use (`twin`): the
reference class of the same name, built from the object's fields (weightings nested inside
`Monotonic`/`Shifted` and proposals' schedules recursively, arrays as float64, trainable
weights such as `Learned`'s copied). This module is the only one of `eqx_impl` that imports
`reference`. At `num_points` drawn points it compares (eqx float32, on the default JAX
device, jitted like the training step, vs reference float64 on the same rounded inputs):

1. the weighting $w(\lambda)$ on a stratified grid of $[\lambda_{\min}, \lambda_{\max}]$;
2. the proposal, through the interface every proposal shares: after three identical
   `update`s of both states (synthetic $w\ell$ values and state-shaped gradients),
   `proposal.sample(state, u)` against `twin(proposal).sample(twin(state), u)` at
   stratified $u$: $\lambda(u)$ and $p(\lambda)$;
3. the weighted loss $\tfrac12\,w/p\cdot\ell$ per example, through the training step's own
   `batch_losses`, on training examples, with a random `ProbeNet` predicting the configured
   target, wrapped in `EpsModel` (its reference twin on the reference side).

Tolerances (the equivalence suite's float32 bounds, $\eta = 2\times10^{-5}$ of the terms,
with a 5x margin): relative `RTOL` $= 10^{-4}$ for $w$ and $p$; absolute
$10^{-4}\max(1, |\lambda|)$ for $\lambda$; relative $10^{-4}\,\kappa$ for the loss, where
$\kappa \ge 1$ is the condition number of $\ell = \sum_i r_i^2$, $r = \epsilon - \hat\epsilon$,
$\hat\epsilon = Az + B\hat y$ (`_loss_condition`). Each $r_i$ is a sum of terms of total size
$s_i = |\epsilon_i| + |A|(\alpha|x_i| + \sigma|\epsilon_i|) + |B\hat y_i|$ (the middle one is
$z$ with its own rounding), so float32 gets it to $\eta s_i$, and
$|\delta\ell|/\ell \le 2\eta\sum_i|r_i|s_i/\sum_i r_i^2 = 2\eta\kappa$; with $w$'s and $p$'s
$\eta$ each, the loss is within $(2\kappa + 2)\eta \le 4\kappa\eta < 10^{-4}\kappa$. $\kappa$ is
1 when nothing cancels (`"eps"` with $\hat\epsilon$ far from $\epsilon$) and grows like
$e^{-\lambda/2}$ as $\lambda \to \lambda_{\min}$ for every other target, where $\hat\epsilon$
is $\epsilon + O(\alpha)$ built from terms of size 1: float32's rounding of $z$ alone then
moves $\ell$ by $\sim 10^{-7}/\alpha$ relative, e.g. $10^{-4}$ at $\lambda = -14$. A wrong
objective still shows where $\kappa$ is small, and $w$ and $p$ are checked on their own.
Values too small for float32 to hold as normal numbers are skipped.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

import eqx_impl as ex
import reference as ref
from eqx_impl.data import Dataset
from eqx_impl.models.precision import FULL_FLOAT32
from eqx_impl.proposals import AbstractProposal
from eqx_impl.train.config import Config
from eqx_impl.train.step import batch_losses

__all__ = ["Check", "PreflightError", "PreflightReport", "check_or_raise", "run_preflight", "twin"]

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


def _compare(name, actual, expected, *, rtol: float | np.ndarray = 0.0, atol=None, where=None) -> Check:
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


# --- reference twins ----------------------------------------------------------------------


def _reference_class(obj) -> type | None:
    """The reference class mirroring `obj`'s: the nearest `eqx_impl` class in its MRO whose
    name `reference` exports (so a subclass is checked as the class it specialises)."""
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("eqx_impl") and inspect.isclass(getattr(ref, cls.__name__, None)):
            return getattr(ref, cls.__name__)
    return None


def twin(obj) -> Any:
    """The float64 `reference` twin of an eqx object, built generically from its fields.

    Arrays become float64 NumPy (0-d ones NumPy scalars; integer arrays stay integer); lists and tuples (optax's
    states among them) are twinned element by element; an `eqx_impl` object becomes its
    reference class (`_reference_class`) called with its same-named attributes, each
    twinned (parameters it has no attribute for keep their defaults; `rng`, the reference
    spelling of `key`, gets a generator whose draws the copied arrays replace), then the
    object's array fields that are not constructor parameters (trainable weights) are
    copied onto it.

    **Returns:** the reference object.
    """
    if isinstance(obj, jax.Array | np.ndarray):
        return np.asarray(obj, np.float64 if jnp.issubdtype(obj.dtype, jnp.inexact) else None)[()]
    cls = _reference_class(obj)
    if cls is None:
        if isinstance(obj, list | tuple):
            return type(obj)(map(twin, obj)) if type(obj) in (list, tuple) else tuple(map(twin, obj))
        if isinstance(obj, eqx.Module):
            raise TypeError(f"{type(obj).__name__} has no reference twin: add a class of that name to `reference`.")
        return obj
    params = inspect.signature(cls).parameters
    kwargs = {name: twin(getattr(obj, name)) for name in params if name != "rng" and hasattr(obj, name)}
    if "rng" in params:
        kwargs["rng"] = np.random.default_rng(0)
    out = cls(**kwargs)
    fields = dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ()
    for f in fields:
        if f.name not in params and eqx.is_inexact_array(getattr(obj, f.name)):
            setattr(out, f.name, twin(getattr(obj, f.name)))
    return out


def _probe_layers(dim: int, hidden: int, rng: np.random.Generator):
    """Random `ProbeNet` weights in float32, one tanh hidden layer of `hidden` units."""
    sizes = [dim + 2, hidden, dim]
    return [
        (
            jnp.asarray(rng.normal(size=(m, n)) / math.sqrt(m), jnp.float32),
            jnp.asarray(0.1 * rng.normal(size=n), jnp.float32),
        )
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


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
def _eqx_update(proposal, state, logsnr, values, grads):
    return proposal.update(state, logsnr, values, grads)


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
    their reference twins are built from them (`twin`); `config` is the resolved config
    (the log-SNR range and `sigma_data` filled in). It checks the objective's math, not the
    network's rounding: it runs at full float32 precision
    (`jax.default_matmul_precision("highest")`, no TF32, float32 probe network) whatever
    `train.precision` says.

    **Returns:** a `PreflightReport` (`.passed`, printable).
    """
    with FULL_FLOAT32.context():
        return _run_preflight(config, dataset, weighting, proposal, proposal_state, num_points, seed)


def _run_preflight(config, dataset, weighting, proposal, proposal_state, num_points, seed) -> PreflightReport:
    rng = np.random.default_rng(seed)
    report = PreflightReport(jax.devices()[0].platform, num_points)
    ref_weighting = twin(weighting)
    report.checks.append(_check_weighting(config, weighting, ref_weighting, rng, num_points))
    draws, checks = _check_proposal(config, proposal, proposal_state, ref_weighting, rng, num_points, seed)
    report.checks.extend(checks)
    report.checks.append(_check_loss(config, dataset, weighting, ref_weighting, draws, rng))
    return report


def _check_weighting(config, weighting, ref_weighting, rng, num_points) -> Check:
    """1. The weighting on a stratified grid of the interval (endpoints included). **Returns:** the `Check`."""
    o = config.objective
    lo, hi = float(o.logsnr_min), float(o.logsnr_max)
    grid = lo + (hi - lo) * _stratified(num_points, rng)
    grid[0], grid[-1] = lo, hi
    grid = _f64(grid.astype(np.float32))
    w_eqx = _eqx_weighting(weighting, jnp.asarray(grid, jnp.float32))
    where = [f"logsnr={v:.6g}" for v in grid]
    return _compare(f"weighting {_describe_weighting(config)}", w_eqx, ref_weighting(grid), rtol=RTOL, where=where)


def _synthetic_grads(state, rng):
    """A gradient shaped like `state`: float32 standard normals in its inexact arrays."""

    def draw(leaf):
        return jnp.asarray(rng.standard_normal(leaf.shape), leaf.dtype) if eqx.is_inexact_array(leaf) else leaf

    return jax.tree.map(draw, state)


def _updated_states(proposal, state, ref_proposal, ref_weighting, seed, num):
    """Both states after three identical `update`s with the same synthetic batch of
    log-SNRs, $w\\ell$ values and gradients (so adaptive and learned proposals are not at
    their initial values). **Returns:** `(eqx state, reference state)`."""
    lo, hi = proposal.logsnr_range
    ref_state = twin(state)
    rng = np.random.default_rng([seed, 1])  # its own stream: the other checks draw as without updates
    for _ in range(3):
        lam = _f64((lo + (hi - lo) * rng.random(num)).astype(np.float32))
        values = _f64((ref_weighting(lam) * (1.0 + 63.0 * special.expit(-lam))).astype(np.float32))
        grads = _synthetic_grads(state, rng)
        ref_state = ref_proposal.update(ref_state, lam, values, twin(grads))
        state = _eqx_update(proposal, state, jnp.asarray(lam, jnp.float32), jnp.asarray(values, jnp.float32), grads)
    return state, ref_state


def _check_proposal(config, proposal, proposal_state, ref_weighting, rng, num_points, seed):
    """2. The proposal: λ(u) and p(λ) at stratified u, after identical updates.

    **Returns:** `((logsnr, density, ref_density), [Check, Check])`.
    """
    u = _stratified(num_points, rng)
    ref_proposal = twin(proposal)
    state, ref_state = _updated_states(proposal, proposal_state, ref_proposal, ref_weighting, seed, len(u))
    logsnr, density = (_f64(v) for v in _eqx_sample(proposal, state, jnp.asarray(u, jnp.float32)))
    ref_logsnr, ref_density = ref_proposal.sample(ref_state, u)
    name, where = config.objective.schedule, [f"u={v:.8g}" for v in u]
    atol = LOGSNR_ATOL * np.maximum(1.0, np.abs(ref_logsnr))
    checks = [
        _compare(f"proposal {name}: logsnr(u)", logsnr, ref_logsnr, atol=atol, where=where),
        _compare(f"proposal {name}: density", density, ref_density, rtol=RTOL, where=where),
    ]
    return (logsnr, density, ref_density), checks


def _loss_condition(ref_model, x, logsnr, eps) -> float:
    r"""$\kappa = \sum_i |r_i|\,s_i / \sum_i r_i^2 \ge 1$, the condition number of
    $\ell = \|r\|^2$, $r = \epsilon - \hat\epsilon$, under rounding of each term of $r$
    (module docstring): $s_i = |\epsilon_i| + |A|(\alpha|x_i| + \sigma|\epsilon_i|) + |B\hat y_i|$
    with $\hat\epsilon = Az + B\hat y$, $B\hat y = \hat\epsilon - Az$. **Returns:** $\kappa$ (float64).
    """
    alpha, sigma = ref.alpha_sigma(logsnr)
    z = alpha * x + sigma * eps
    eps_hat = ref_model(z, logsnr)
    a = ref.eps_from_prediction(ref_model.target, np.zeros(1), np.ones(1), logsnr, ref_model.sigma_data)
    r = eps - eps_hat
    terms = np.abs(eps) + np.abs(a) * (alpha * np.abs(x) + sigma * np.abs(eps)) + np.abs(eps_hat - a * z)
    return float(np.sum(np.abs(r) * terms) / max(np.sum(r**2), np.finfo(np.float64).tiny))


def _check_loss(config, dataset, weighting, ref_weighting, draws, rng) -> Check:
    """3. The weighted loss through the training step's loss function, with a random probe
    network predicting the configured target, at relative tolerance `RTOL` times the loss's
    condition number (`_loss_condition`). **Returns:** the `Check`."""
    o, (logsnr, density, ref_density) = config.objective, draws
    x_all = dataset.model_data("train")
    x = np.asarray(x_all[rng.integers(0, len(x_all), len(logsnr))], np.float32)
    eps = rng.standard_normal(x.shape).astype(np.float32)
    probe = ex.ProbeNet(_probe_layers(math.prod(x.shape[1:]), 32, rng))
    model = ex.EpsModel(probe, o.target, config.model.sigma_data, config.model.normalize_input)
    f32 = [jnp.asarray(v, jnp.float32) for v in (x, logsnr, eps, density)]
    losses = _eqx_losses(model, weighting, *f32)
    ref_model = twin(model)
    x, eps = _f64(x), _f64(eps)
    ref_losses = np.array(
        [ref.weighted_loss(ref_model, x[i], logsnr[i], eps[i], ref_weighting, ref_density[i]) for i in range(len(x))]
    )
    kappa = np.array([_loss_condition(ref_model, x[i], logsnr[i], eps[i]) for i in range(len(x))])
    where = [f"logsnr={v:.6g} (condition {k:.3g})" for v, k in zip(logsnr, kappa, strict=True)]
    name = f"weighted loss (target {o.target}, probe network)"
    return _compare(name, losses, ref_losses, rtol=RTOL * kappa, where=where)


def check_or_raise(report: PreflightReport) -> PreflightReport:
    """Raise `PreflightError` with the report when any check fails. **Returns:** the report."""
    if not report.passed:
        raise PreflightError(
            f"{report}\nTraining refused: eqx_impl disagrees with the float64 reference for this "
            "objective. Fix the weighting/schedule/loss (or the config), or pass --no-preflight "
            "to train anyway."
        )
    return report
