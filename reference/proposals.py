r"""Proposals in float64 (mirror of `eqx_impl.proposals`): how a training step draws the noise
level $\lambda$ and its density $p(\lambda)$.

Every proposal has the same pure, optax-style interface:

- `init() -> state`;
- `sample(state, u) -> (logsnr, density)`: uniforms $u_i \in [0, 1)$ to $(\lambda_i, p(\lambda_i))$;
- `update(state, logsnr, values, grads) -> state`: with the batch's $w(\lambda_i)\ell_i$
  (`values`) and `grads`, the gradient of the batch's mean squared estimate with respect to
  `state` (a state-shaped object, as the eqx twin gets from autodiff);
- `density(state, logsnr)`.

Final classes: `FixedProposal` (a schedule, no state), `AdaptiveProposal` (Kingma & Gao's
`Adaptive`, state per-bin EMAs) and `LearnedProposal` (VDM's `Learned`, trained by Adam on
`grads`; $p = -1/\lambda'(u)$ analytically).
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reference._typing import FloatArray
from reference.importance import Adaptive, AdaptiveState
from reference.learned import PARAMETERS, Learned
from reference.schedules import AbstractSchedule

__all__ = ["AbstractProposal", "AdaptiveProposal", "FixedProposal", "LearnedProposal", "LearnedState"]


class AbstractProposal(abc.ABC):
    """Draws $(\\lambda, p(\\lambda))$ from uniforms; see the module docstring."""

    @abc.abstractmethod
    def init(self) -> Any:
        """**Returns:** the initial state (possibly `None`)."""

    @abc.abstractmethod
    def sample(self, state, u) -> tuple[FloatArray, FloatArray]:
        """**Returns:** `(logsnr, density)` for uniforms `u` (increasing in `u`)."""

    @abc.abstractmethod
    def update(self, state, logsnr, values, grads) -> Any:
        """**Returns:** the state after folding in the batch's `values` or `grads`."""

    @abc.abstractmethod
    def density(self, state, logsnr) -> FloatArray:
        """**Returns:** $p(\\lambda)$."""

    @property
    @abc.abstractmethod
    def logsnr_range(self) -> tuple[float, float]:
        """The support $[\\lambda_{\\min}, \\lambda_{\\max}]$."""


class FixedProposal(AbstractProposal):
    """A schedule: $\\lambda = \\lambda(u)$, $p$ from `schedule.density`; no state."""

    def __init__(self, schedule: AbstractSchedule):
        self.schedule = schedule

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
    """Kingma & Gao's adaptive schedule; its state follows `values`."""

    def __init__(self, adaptive: Adaptive):
        self.adaptive = adaptive

    def init(self) -> AdaptiveState:
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


@dataclass(frozen=True)
class LearnedState:
    """The learned schedule and Adam's state in optax's layout, `((count, mu, nu), ())`: `mu`
    and `nu` are `Learned` objects holding the moments in place of the weights."""

    schedule: Learned
    opt_state: tuple


def _with(schedule: Learned, arrays: Mapping[str, Any]) -> Learned:
    """A copy of `schedule` with the weights in `arrays`."""
    out = copy.copy(schedule)
    for name, value in arrays.items():
        setattr(out, name, value)
    return out


class LearnedProposal(AbstractProposal):
    r"""`initial`: the schedule at the start of training. `update` takes one Adam step
    (rate `lr`, moments `b1`, `b2`, `eps`; optax's `adam`) on the schedule's weights:
    $m \leftarrow b_1 m + (1-b_1)g$, $v \leftarrow b_2 v + (1-b_2)g^2$,
    $\theta \leftarrow \theta - \mathrm{lr}\,\hat m/(\sqrt{\hat v} + \epsilon)$ with
    $\hat m = m/(1-b_1^n)$, $\hat v = v/(1-b_2^n)$ after $n$ steps."""

    def __init__(self, initial: Learned, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.initial, self.lr, self.b1, self.b2, self.eps = initial, float(lr), float(b1), float(b2), float(eps)

    def init(self) -> LearnedState:
        zeros = {name: np.zeros_like(np.asarray(getattr(self.initial, name), np.float64)) for name in PARAMETERS}
        moments = _with(self.initial, zeros)
        return LearnedState(self.initial, ((np.int64(0), moments, moments), ()))

    def sample(self, state: LearnedState, u):
        return state.schedule.logsnr(u), -1.0 / state.schedule.dlogsnr_dt(u)

    def update(self, state: LearnedState, logsnr, values, grads: LearnedState):
        del logsnr, values
        (count, mu, nu), _ = state.opt_state
        count = count + 1
        new_mu, new_nu, new_weights = {}, {}, {}
        for name in PARAMETERS:
            g = np.asarray(getattr(grads.schedule, name), np.float64)
            new_mu[name] = self.b1 * getattr(mu, name) + (1.0 - self.b1) * g
            new_nu[name] = self.b2 * getattr(nu, name) + (1.0 - self.b2) * g**2
            m_hat = new_mu[name] / (1.0 - self.b1**count)
            v_hat = new_nu[name] / (1.0 - self.b2**count)
            new_weights[name] = getattr(state.schedule, name) - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        opt_state = ((count, _with(mu, new_mu), _with(nu, new_nu)), ())
        return LearnedState(_with(state.schedule, new_weights), opt_state)

    def density(self, state: LearnedState, logsnr):
        return state.schedule.density(logsnr)

    @property
    def logsnr_range(self):
        # With learned endpoints this is the initial interval.
        return self.initial.init_logsnr_min, self.initial.init_logsnr_max
