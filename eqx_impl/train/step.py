r"""The training step: one `eqx.filter_jit` around loss, gradient and update, scanned over
`k` steps per dispatch.

For a batch $x_{1..B}$ the step draws stratified uniforms $u_i = (u_0 + i/B) \bmod 1$,
$(\lambda_i, p_i)$ from the proposal and $\epsilon_i \sim \mathcal N(0, I)$, and minimises
$$\bar{\mathcal L} = \frac1B\sum_i \hat{\mathcal L}_i,\qquad
  \hat{\mathcal L}_i = \tfrac12\,\frac{w(\lambda_i)}{p_i}\,\ell_i(\lambda_i)$$
(`weighted_loss`, vmapped), an unbiased estimate of $\mathcal L_w$ whatever the proposal.

Every proposal (`eqx_impl.proposals`) is then updated the same way, with
$w(\lambda_i)\ell_i = 2p_i\hat{\mathcal L}_i$ (what the adaptive proposal tracks) and the gradient of
the second moment $\frac1B\sum_i\hat{\mathcal L}_i^2$ with respect to its state (what VDM's learned
schedule descends, App. I.2; with fixed endpoints the mean does not depend on the schedule,
so this is the variance). $\hat{\mathcal L}_i$ depends on the state only through
$(\lambda_i, p_i)$, so the one backward pass that gives the model gradient also gives
$g_i = \partial\bar{\mathcal L}/\partial(\lambda_i, p_i)$, and
$\partial\frac1B\sum\hat{\mathcal L}_i^2/\partial(\lambda_i, p_i) = 2\hat{\mathcal L}_i g_i$
is pulled back through `sample` with its VJP. A proposal that ignores the gradient costs
nothing for it: XLA removes the unused computation.

A class-conditional trainer (`num_classes`) trains on batches `(x, labels)`: each label is
replaced by the null label `num_classes` with probability `label_dropout` (classifier-free
guidance's joint training of $\hat\epsilon(z;\lambda, c)$ and $\hat\epsilon(z;\lambda,\varnothing)$).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from eqx_impl.losses import weighted_loss
from eqx_impl.models.precision import FULL_FLOAT32, Precision
from eqx_impl.proposals import AbstractProposal
from eqx_impl.train.config import NONFINITE_POLICIES, OptimConfig
from eqx_impl.train.optim import ema_decay_at, ema_update, model_optimizer
from eqx_impl.train.parallel import constrain_batch, constrain_replicated
from eqx_impl.train.state import TrainState, initial_state
from eqx_impl.weightings import AbstractWeighting

__all__ = ["Gradients", "Trainer", "batch_losses", "drop_labels", "init_state", "run_steps", "stratified_uniforms"]


def stratified_uniforms(key, batch_size: int, dtype=jnp.float32):
    r"""$u_i = (u_0 + i/B) \bmod 1$, $u_0 \sim U(0,1)$: one draw in each stratum of width $1/B$.

    **Returns:** shape `(batch_size,)` in `[0, 1)`.
    """
    u0 = jax.random.uniform(key, (), dtype)
    return jnp.mod(u0 + jnp.arange(batch_size, dtype=dtype) / batch_size, 1.0)


def drop_labels(key, labels, num_classes: int, rate: float):
    r"""Each label replaced by the null label `num_classes` with probability `rate`,
    independently (classifier-free guidance's label dropout).

    **Returns:** int32, shape of `labels`.
    """
    drop = jax.random.bernoulli(key, rate, jnp.shape(labels))
    return jnp.where(drop, num_classes, labels).astype(jnp.int32)


def batch_losses(model, weighting, x, logsnr, eps, density, keys=None, labels=None):
    r"""$\hat{\mathcal L}_i = \tfrac12\,w(\lambda_i)/p_i\cdot\ell_i$ for each example: `weighted_loss`
    vmapped over the batch. `keys` (one per example) go to the network (dropout), `labels`
    (one per example) to a conditional network.

    **Returns:** shape `(B,)`.
    """

    def one(x_i, logsnr_i, eps_i, density_i, key_i, label_i):
        extra = {k: v for k, v in (("key", key_i), ("label", label_i)) if v is not None}
        eps_model = functools.partial(model, **extra) if extra else model
        return weighted_loss(eps_model, x_i, logsnr_i, eps_i, weighting, density_i)

    if keys is None and labels is None:
        return jax.vmap(lambda x_i, logsnr_i, eps_i, density_i: one(x_i, logsnr_i, eps_i, density_i, None, None))(
            x, logsnr, eps, density
        )
    if labels is None:
        return jax.vmap(
            lambda x_i, logsnr_i, eps_i, density_i, key_i: one(x_i, logsnr_i, eps_i, density_i, key_i, None)
        )(x, logsnr, eps, density, keys)
    if keys is None:
        return jax.vmap(
            lambda x_i, logsnr_i, eps_i, density_i, label_i: one(x_i, logsnr_i, eps_i, density_i, None, label_i)
        )(x, logsnr, eps, density, labels)
    return jax.vmap(one)(x, logsnr, eps, density, keys, labels)


class Gradients(NamedTuple):
    """What one forward/backward pass of the step computes."""

    loss: Any
    losses: Any
    logsnr: Any
    density: Any
    model_grads: Any
    proposal_grads: Any


class Trainer(eqx.Module):
    """The pure step function and its fixed ingredients (no arrays that change)."""

    weighting: AbstractWeighting
    proposal: AbstractProposal
    # AdamW with warm-up and clipping for the model (`optim.model_optimizer`), built by `create`.
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    ema_decay: float = eqx.field(static=True)  # the EMA's decay β (`optim.ema_decay_at`)
    dropout: bool = eqx.field(static=True, default=False)
    # Data parallelism (`parallel.py`): the batch is split over this mesh's "data" axis, the
    # state replicated; `None` leaves placement to the inputs (one device).
    mesh: Mesh | None = eqx.field(static=True, default=None)
    # train.nonfinite: what a step with a non-finite loss or gradient does ("skip"/"stop").
    nonfinite: str = eqx.field(static=True, default="stop")
    # How the network computes (`models.precision`): its layers are cast inside the loss,
    # so parameters, gradients, optimiser state and EMA stay float32.
    precision: Precision = eqx.field(static=True, default=FULL_FLOAT32)
    # A class-conditional model: batches are `(x, labels)`, each label dropped to the null
    # label `num_classes` with probability `label_dropout`. `None`: unconditional.
    num_classes: int | None = eqx.field(static=True, default=None)
    label_dropout: float = eqx.field(static=True, default=0.0)

    def __check_init__(self):
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"Trainer: nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {self.nonfinite!r}."
            )

    @classmethod
    def create(
        cls,
        weighting,
        proposal,
        optim: OptimConfig,
        total_steps: int,
        dropout=False,
        mesh=None,
        nonfinite="stop",
        precision: Precision = FULL_FLOAT32,
        num_classes: int | None = None,
        label_dropout: float = 0.0,
    ):
        """**Returns:** a `Trainer` for these ingredients and optimiser settings (and a data
        mesh from `parallel.data_mesh`, or `None`); `nonfinite` is the policy for a step
        whose loss or gradient is not finite (see `steps`); `precision` the network's policy;
        `num_classes` and `label_dropout` make it class-conditional (see the module docstring)."""
        return cls(
            weighting,
            proposal,
            # The step count matters only to a decaying rate: runs of other lengths share the step.
            model_optimizer(optim, int(total_steps) if optim.lr_decay != "constant" else 0),
            float(optim.ema_decay),
            bool(dropout),
            mesh,
            str(nonfinite),
            precision,
            None if num_classes is None else int(num_classes),
            float(label_dropout),
        )

    def init(self, model, *, key) -> TrainState:
        """The initial state for `model`; `key` (typed) is the run's base key.

        **Returns:** a `TrainState` at step 0.
        """
        return initial_state(model, self.optimizer, self.proposal, key=key)

    def losses(self, model, x, logsnr, eps, density, keys, labels=None):
        """Per-example $\\hat{\\mathcal L}_i$ with the network cast to the precision policy's
        dtype; see `batch_losses`. **Returns:** shape `(B,)`, float32."""
        model = self.precision.cast(model)
        return batch_losses(model, self.weighting, x, logsnr, eps, density, keys if self.dropout else None, labels)

    def split_batch(self, state: TrainState, batch):
        """`batch` as `(x, labels)`: `labels` after label dropout for a conditional trainer
        (its key `fold_in(step_key, 1)`, apart from the other draws), `None` otherwise.

        **Returns:** `(x, labels or None)`.
        """
        if self.num_classes is None:
            if isinstance(batch, tuple):
                raise ValueError(
                    "Trainer: an unconditional trainer (num_classes=None) takes batches x, not (x, labels)."
                )
            return batch, None
        if not isinstance(batch, tuple):
            raise ValueError(
                f"Trainer: a conditional trainer (num_classes={self.num_classes}) needs batches (x, labels)."
            )
        x, labels = batch
        key = jax.random.fold_in(state.step_key(), 1)
        return x, drop_labels(key, labels, self.num_classes, self.label_dropout)

    def draw(self, state: TrainState, x):
        """The step's randomness from `fold_in(key, step)`: uniforms, noise, network keys."""
        k_u, k_eps, k_net = jax.random.split(state.step_key(), 3)
        u = stratified_uniforms(k_u, x.shape[0], x.dtype)
        eps = jax.random.normal(k_eps, x.shape, x.dtype)
        return u, eps, jax.random.split(k_net, x.shape[0])

    def gradients(self, state: TrainState, x) -> Gradients:
        """Loss, per-example losses and gradients on the batch `x` (shape `(B, *data)`, or
        `(x, labels)` for a conditional trainer), in one forward and one backward pass
        through the network.

        **Returns:** `Gradients`; `proposal_grads` is the gradient of the mean squared
        estimate with respect to the proposal's state.
        """
        x, labels = self.split_batch(state, x)
        u, eps, keys = self.draw(state, x)
        params, static = eqx.partition(state.model, eqx.is_inexact_array)
        (logsnr, density), pullback = eqx.filter_vjp(lambda s: self.proposal.sample(s, u), state.proposal_state)

        def objective(diff):
            p, lam, dens = diff
            losses = self.losses(eqx.combine(p, static), x, lam, eps, dens, keys, labels)
            return jnp.mean(losses), losses

        (loss, losses), (model_grads, g_logsnr, g_density) = jax.value_and_grad(objective, has_aux=True)(
            (params, logsnr, density)
        )
        losses = jax.lax.stop_gradient(losses)
        # d/dstate mean(L̂²) = mean(2 L̂_i dL̂_i/dstate); L̂_i depends on the state through (λ_i, p_i) only.
        (proposal_grads,) = pullback((2.0 * losses * g_logsnr, 2.0 * losses * g_density))
        return Gradients(loss, losses, logsnr, density, model_grads, proposal_grads)

    def step(self, state: TrainState, x) -> tuple[TrainState, dict]:
        """One optimisation step on the batch `x` (shape `(B, *data)`).

        The step is guarded: if the loss, the squared gradient norm (so a gradient) or the
        proposal's update is not finite, the model, EMA, optimiser and proposal states are
        returned unchanged (selected with `jnp.where`, not `lax.cond`, which XLA:CPU runs
        slowly around convolutions) and only the step counter advances;
        `metrics["nonfinite"]` is then 1.

        **Returns:** `(new state, metrics)` with scalar metrics `loss`, `loss_std`,
        `grad_norm` and `nonfinite` (0 or 1).
        """
        g = self.gradients(state, x)
        params = eqx.filter(state.model, eqx.is_inexact_array)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 count with floats
            updates, opt_state = self.optimizer.update(g.model_grads, state.opt_state, params)
        model = eqx.apply_updates(state.model, updates)
        ema = ema_update(state.ema, model, ema_decay_at(self.ema_decay, state.step))

        # w(λ)·ℓ = 2 p(λ) L̂ and the gradient of mean(L̂²): what the proposals follow.
        proposal_state = self.proposal.update(
            state.proposal_state, g.logsnr, 2.0 * g.density * g.losses, g.proposal_grads
        )

        # A finite loss and ‖g‖² (so every g and g², no Adam second moment overflows) keep the
        # model's Adam moments (convex combinations of g and g²), its step (divided by √v̂ + ε,
        # ε > 0 as the config requires), the parameters and their EMA finite short of growing
        # past the dtype's largest value: the big trees need no check of their own. (Checking
        # each of their ~500 leaves made XLA:CPU compile the digits U-Net step in 59-152 s
        # instead of about 20 s.) The proposal's state is small and checked leaf by leaf.
        grad_sq_norm = optax.tree.norm(g.model_grads, squared=True)
        finite = jnp.isfinite(grad_sq_norm) & _all_finite((g.loss, proposal_state))
        new_state = TrainState(
            model=_select(finite, model, state.model),
            ema=_select(finite, ema, state.ema),
            opt_state=_select(finite, opt_state, state.opt_state),
            proposal_state=_select(finite, proposal_state, state.proposal_state),
            step=state.step + 1,
            key=state.key,
        )
        metrics = {
            "loss": g.loss,
            "loss_std": jnp.std(g.losses),
            "grad_norm": jnp.sqrt(grad_sq_norm),
            "nonfinite": jnp.logical_not(finite).astype(jnp.int32),
        }
        return new_state, metrics

    def _guarded_step(self, state: TrainState, x, halted):
        """`step`, and with the `stop` policy: from the first non-finite step on (`halted`),
        the whole state, step counter included, stays the last good one.

        **Returns:** `(state, metrics, halted)`.
        """
        new_state, metrics = self.step(state, x)
        if self.nonfinite == "stop":
            halted = halted | (metrics["nonfinite"] > 0)
            new_state = _select(jnp.logical_not(halted), new_state, state)
        return new_state, metrics, halted

    def steps(self, state: TrainState, data, indices) -> tuple[TrainState, dict]:
        """`indices.shape[0]` steps in a `lax.scan`; step `j` trains on `data[indices[j]]`
        (with `data = (x, labels)`: on `(x[indices[j]], labels[indices[j]])`).
        (Prefer one step per dispatch for convolutional networks on CPU; see below.)

        With a `mesh`, each batch is split over its devices and the results are replicated.

        A step with a non-finite loss or gradient changes no parameter (see `step`). With
        `nonfinite="skip"` training goes on with the next step; with `"stop"` the state
        after the call is the one before the first bad step (its step counter included),
        so the caller can checkpoint it and stop.

        **Returns:** `(final state, metrics stacked over the steps)`.
        """
        halted = jnp.zeros((), bool)
        if indices.shape[0] == 1:
            # No loop for a single step: XLA:CPU runs channel-first convolutions inside a
            # while loop an order of magnitude slower than outside one (jax-ml/jax#12868).
            state, metrics, _ = self._guarded_step(state, constrain_batch(_take(data, indices[0]), self.mesh), halted)
            return constrain_replicated((state, jax.tree.map(lambda m: m[None], metrics)), self.mesh)
        # Only arrays go through the scan carry; Python leaves (e.g. a Dropout's `inference`
        # flag) stay static.
        dynamic, static = eqx.partition(state, eqx.is_array)

        def body(carry, idx):
            dynamic, halted = carry
            x = constrain_batch(_take(data, idx), self.mesh)
            new_state, metrics, halted = self._guarded_step(eqx.combine(dynamic, static), x, halted)
            return (eqx.filter(new_state, eqx.is_array), halted), metrics

        (dynamic, _), metrics = jax.lax.scan(body, (dynamic, halted), indices)
        return constrain_replicated((eqx.combine(dynamic, static), metrics), self.mesh)


def _take(data, idx):
    """`data[idx]`, or `(x[idx], labels[idx])` for a conditional trainer's `(x, labels)`."""
    return tuple(a[idx] for a in data) if isinstance(data, tuple) else data[idx]


def _all_finite(tree):
    """**Returns:** a scalar bool: every inexact array leaf of `tree` is finite."""
    leaves = [leaf for leaf in jax.tree.leaves(tree) if eqx.is_inexact_array(leaf)]
    return functools.reduce(jnp.logical_and, (jnp.all(jnp.isfinite(leaf)) for leaf in leaves), jnp.array(True))


def _select(pred, new, old):
    """`new` where the scalar `pred` holds, else `old`, leaf by leaf (non-array leaves of
    `new`, which equal those of `old`, are kept).

    **Returns:** a pytree shaped like `new`.
    """
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b) if eqx.is_array(a) else a, new, old)


@eqx.filter_jit
def init_state(trainer: Trainer, model, key) -> TrainState:
    """`trainer.init(model, key=key)` under `jit` (one compilation, not one per leaf shape).

    **Returns:** a `TrainState` at step 0.
    """
    return trainer.init(model, key=key)


@eqx.filter_jit
def _run_steps(trainer: Trainer, state: TrainState, data, indices):
    return trainer.steps(state, data, indices)


def run_steps(trainer: Trainer, state: TrainState, data, indices):
    """The one jitted entry point: `trainer.steps` (loss, gradient, update) for `k` steps,
    traced and compiled under the trainer's matmul precision (`Precision.context`).

    **Returns:** `(state, metrics)` with metrics of shape `(k,)`.
    """
    with trainer.precision.context():
        return _run_steps(trainer, state, data, indices)


def lower_steps(trainer: Trainer, state: TrainState, data, indices):
    """`run_steps` lowered (not run), under the same precision: for cost analysis and
    compile-time measurements. **Returns:** a `jax.stages.Lowered`."""
    with trainer.precision.context():
        return _run_steps.lower(trainer, state, data, indices)
