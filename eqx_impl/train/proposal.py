r"""Proposals for the noise level: how the training step draws $\lambda$ and its density $p(\lambda)$.

All three map stratified uniforms $u_i = (u_0 + i/B) \bmod 1$ to $(\lambda_i, p(\lambda_i))$ with
the same pure interface (`init`, `sample`, `update`), so the step treats them alike:

- `ScheduleProposal`: a fixed schedule, $\lambda = \lambda(u)$, $p = $ `schedule.density(λ)`;
  no state.
- `AdaptiveProposal`: Kingma & Gao's adaptive schedule; its state (per-bin EMAs of $w\ell$)
  is updated inside the step with the batch's $w(\lambda)\ell = 2\,p(\lambda)\hat{\mathcal L}$.
- `LearnedProposal`: VDM's learned schedule; its state *is* the `Learned` module, whose
  parameters the step trains to minimise $\mathbb E[\hat{\mathcal L}^2]$. Here
  $p = -1/\lambda'(u)$ by forward-mode autodiff, differentiable in the parameters.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx

from eqx_impl._typing import Array
from eqx_impl.importance import Adaptive, AdaptiveState
from eqx_impl.learned import Learned
from eqx_impl.schedules import AbstractSchedule

__all__ = ["AbstractProposal", "AdaptiveProposal", "LearnedProposal", "ScheduleProposal", "make_proposal"]


class AbstractProposal(eqx.Module):
    """Draws $(\\lambda, p(\\lambda))$ from uniforms; `trainable` proposals get gradients."""

    trainable: ClassVar[bool] = False

    @abc.abstractmethod
    def init(self) -> Any:
        """**Returns:** the initial proposal state (a pytree, possibly `None`)."""

    @abc.abstractmethod
    def sample(self, state, u: Array) -> tuple[Array, Array]:
        """**Returns:** `(logsnr, density)` for uniforms `u` (increasing in `u`)."""

    @abc.abstractmethod
    def density(self, state, logsnr: Array) -> Array:
        """**Returns:** $p(\\lambda)$ (for plots and diagnostics)."""

    def update(self, state, logsnr: Array, values: Array):
        """Fold the batch's $w(\\lambda)\\ell$ `values` into the state (default: no change)."""
        del logsnr, values
        return state

    @property
    @abc.abstractmethod
    def logsnr_range(self) -> tuple[float, float]:
        """The support $[\\lambda_{\\min}, \\lambda_{\\max}]$ (concrete floats)."""


class ScheduleProposal(AbstractProposal):
    schedule: AbstractSchedule

    def init(self) -> None:
        return None

    def sample(self, state, u):
        del state
        logsnr = self.schedule.logsnr(u)
        return logsnr, self.schedule.density(logsnr)

    def density(self, state, logsnr):
        del state
        return self.schedule.density(logsnr)

    @property
    def logsnr_range(self):
        return float(self.schedule.logsnr_min), float(self.schedule.logsnr_max)


class AdaptiveProposal(AbstractProposal):
    adaptive: Adaptive

    def init(self) -> AdaptiveState:
        return self.adaptive.init()

    def sample(self, state, u):
        return self.adaptive.sample(state, u)

    def density(self, state, logsnr):
        return self.adaptive.density(state, logsnr)

    def update(self, state, logsnr, values):
        return self.adaptive.update(state, logsnr, values)

    @property
    def logsnr_range(self):
        return self.adaptive.logsnr_min, self.adaptive.logsnr_max


class LearnedProposal(AbstractProposal):
    """The state is the `Learned` schedule; `initial` is its value at the start of training."""

    initial: Learned
    trainable: ClassVar[bool] = True

    def init(self) -> Learned:
        return self.initial

    def sample(self, state: Learned, u):
        logsnr = state.logsnr(u)
        return logsnr, -1.0 / state.dlogsnr_dt(u)

    def density(self, state: Learned, logsnr):
        return state.density(logsnr)

    @property
    def logsnr_range(self):
        # With learned endpoints this is the initial interval.
        return self.initial.init_logsnr_min, self.initial.init_logsnr_max


def make_proposal(schedule) -> AbstractProposal:
    """Wrap a schedule, `Adaptive` or `Learned` as a proposal. **Returns:** the proposal."""
    if isinstance(schedule, Learned):
        return LearnedProposal(schedule)
    if isinstance(schedule, Adaptive):
        return AdaptiveProposal(schedule)
    if isinstance(schedule, AbstractSchedule):
        return ScheduleProposal(schedule)
    raise TypeError(f"Cannot use {type(schedule).__name__} as a proposal.")
