r"""Proposals: how a training step draws the noise level $\lambda$ and its density $p(\lambda)$.

The weighted loss $\tfrac12\,w(\lambda)/p(\lambda)\,\ell(\lambda)$ is unbiased for any proposal
$p$ (the noise schedule is an importance distribution); the proposal only sets the
estimator's variance. Every proposal has the same pure, optax-style interface, so the
training step treats them alike:

- `init() -> state`;
- `sample(state, u) -> (logsnr, density)`: stratified uniforms $u_i$ to $(\lambda_i, p(\lambda_i))$,
  differentiable in `state`;
- `update(state, logsnr, values, grads) -> state`: after a step, with the batch's
  $w(\lambda_i)\ell_i$ (`values`) and `grads`, the gradient of the batch's mean squared
  estimate $\frac1B\sum_i\hat{\mathcal L}_i^2$ with respect to `state` (through `sample`);
- `density(state, logsnr)`, for plots and diagnostics.

Final classes:

- `FixedProposal`: a schedule: $\lambda = \lambda(u)$ and $p(\lambda)$ from `schedule.density`; no state.
- `AdaptiveProposal`: Kingma & Gao's adaptive schedule (`importance.Adaptive`); its state,
  per-bin EMAs of $w\ell$, follows `values`.
- `LearnedProposal`: VDM's learned schedule (`learned.Learned`, App. I.2). Its state holds
  the schedule and its Adam state; `update` takes an Adam step on `grads`, which minimises
  the second moment of the estimate, so (the mean being fixed) its variance. Here
  $p = -1/\lambda'(u)$ by forward-mode autodiff.

A step that ignores `grads` (every proposal but the learned one) costs nothing for them:
the unused gradient is removed by XLA's dead-code elimination.
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import optax
from jaxtyping import PyTree

from eqx_impl._typing import Array
from eqx_impl.importance import Adaptive
from eqx_impl.learned import Learned
from eqx_impl.schedules import AbstractSchedule

__all__ = ["AbstractProposal", "AdaptiveProposal", "FixedProposal", "LearnedProposal", "LearnedState"]


class AbstractProposal(eqx.Module):
    """Draws $(\\lambda, p(\\lambda))$ from uniforms; see the module docstring."""

    @abc.abstractmethod
    def init(self) -> Any:
        """**Returns:** the initial state (a pytree, possibly `None`)."""

    @abc.abstractmethod
    def sample(self, state, u: Array) -> tuple[Array, Array]:
        """**Returns:** `(logsnr, density)` for uniforms `u` (increasing in `u`)."""

    @abc.abstractmethod
    def update(self, state, logsnr: Array, values: Array, grads) -> Any:
        """Fold the batch's $w(\\lambda)\\ell$ `values` at `logsnr`, or the gradient `grads`
        of the mean squared estimate with respect to `state`, into the state.

        **Returns:** the new state.
        """

    @abc.abstractmethod
    def density(self, state, logsnr: Array) -> Array:
        """**Returns:** $p(\\lambda)$."""

    @property
    @abc.abstractmethod
    def logsnr_range(self) -> tuple[float, float]:
        """The support $[\\lambda_{\\min}, \\lambda_{\\max}]$ (concrete floats)."""


class FixedProposal(AbstractProposal):
    schedule: AbstractSchedule

    def init(self) -> None:
        return None

    def sample(self, state, u):
        del state
        logsnr = self.schedule.logsnr(u)
        return logsnr, self.schedule.density(logsnr)

    def update(self, state, logsnr, values, grads):
        del logsnr, values, grads
        return state

    def density(self, state, logsnr):
        del state
        return self.schedule.density(logsnr)

    @property
    def logsnr_range(self):
        return float(self.schedule.logsnr_min), float(self.schedule.logsnr_max)


class AdaptiveProposal(AbstractProposal):
    adaptive: Adaptive

    def init(self):
        return self.adaptive.init()

    def sample(self, state, u):
        return self.adaptive.sample(state, u)

    def update(self, state, logsnr, values, grads):
        del grads
        return self.adaptive.update(state, logsnr, values)

    def density(self, state, logsnr):
        return self.adaptive.density(state, logsnr)

    @property
    def logsnr_range(self):
        return self.adaptive.logsnr_min, self.adaptive.logsnr_max


class LearnedState(eqx.Module):
    """The learned schedule and the Adam state of its parameters."""

    schedule: Learned
    opt_state: PyTree  # optax's state of the schedule's parameters


class LearnedProposal(AbstractProposal):
    """`initial`: the schedule at the start of training; Adam with rate `lr` and moments
    `b1`, `b2`, `eps` trains its parameters (no decay, no clipping)."""

    initial: Learned
    lr: float = eqx.field(static=True)
    b1: float = eqx.field(static=True, default=0.9)
    b2: float = eqx.field(static=True, default=0.999)
    eps: float = eqx.field(static=True, default=1e-8)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        # Built from static floats: two proposals with equal settings are equal pytrees and
        # share compiled steps.
        return optax.adam(self.lr, b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self) -> LearnedState:
        return LearnedState(self.initial, self.optimizer.init(eqx.filter(self.initial, eqx.is_inexact_array)))

    def sample(self, state: LearnedState, u):
        logsnr = state.schedule.logsnr(u)
        return logsnr, -1.0 / state.schedule.dlogsnr_dt(u)

    def update(self, state: LearnedState, logsnr, values, grads: LearnedState):
        del logsnr, values
        params = eqx.filter(state.schedule, eqx.is_inexact_array)
        grad_params = eqx.filter(grads.schedule, eqx.is_inexact_array)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 count with floats
            updates, opt_state = self.optimizer.update(grad_params, state.opt_state, params)
        return LearnedState(eqx.apply_updates(state.schedule, updates), opt_state)

    def density(self, state: LearnedState, logsnr):
        return state.schedule.density(logsnr)

    @property
    def logsnr_range(self):
        # With learned endpoints this is the initial interval.
        return self.initial.init_logsnr_min, self.initial.init_logsnr_max
