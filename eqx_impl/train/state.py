"""The training state: everything a step reads and writes, one pytree (checkpointed whole)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from eqx_impl._typing import Array, Int, PRNGKeyArray
from eqx_impl.importance import AdaptiveState
from eqx_impl.models import EpsModel
from eqx_impl.proposals import AbstractProposal, LearnedState

__all__ = ["TrainState"]


class TrainState(eqx.Module):
    """Model, EMA model, optimiser state, proposal state (`eqx_impl.proposals`: none, the
    adaptive EMAs, or the learned schedule with its Adam state), the step counter and the base RNG key (raw `uint32` key data,
    so it serialises like any array). The key of step `s` is `fold_in(key, s)`: a run is a
    pure function of the seed, and resuming at step `s` draws exactly what it would have."""

    model: EpsModel
    ema: EpsModel
    opt_state: PyTree  # optax's state of the model's optimiser
    proposal_state: AdaptiveState | LearnedState | None  # FixedProposal's is None
    step: Int[Array, ""]
    key: Array

    @property
    def base_key(self):
        return jax.random.wrap_key_data(self.key)

    def step_key(self):
        """**Returns:** `fold_in(base_key, step)`, the key of the current step."""
        return jax.random.fold_in(self.base_key, self.step)


def initial_state(model: EpsModel, opt, proposal: AbstractProposal, *, key: PRNGKeyArray) -> TrainState:
    """A fresh state: EMA = model, zero step. `key` (typed) is the run's base key.

    **Returns:** a `TrainState`.
    """
    params = eqx.filter(model, eqx.is_inexact_array)
    proposal_state = proposal.init()
    return TrainState(
        model=model,
        ema=model,
        opt_state=opt.init(params),
        proposal_state=proposal_state,
        step=jnp.zeros((), jnp.int32),
        key=jax.random.key_data(key),
    )
