r"""Data parallelism with `jax.sharding`: one mesh axis `"data"` over every device of every
process, the batch split along it, everything else replicated.

The step is written on the global batch (the mean $\frac1B\sum_i\hat{\mathcal L}_i$, the
adaptive proposal's per-bin sums of $w(\lambda_i)\ell_i$) inside one `jit`. Given the
batch's sharding, XLA's partitioner (GSPMD/Shardy) runs each device on its $B/n$ examples
and inserts the all-reduces that the batch reductions need: the gradient, the loss metrics
and the adaptive statistics are summed over devices by the compiler, with no hand-written
`psum`. The parallel step therefore computes the same function as the single-device one
(random draws included: with `jax_threefry_partitionable`, the default, a sharded
`jax.random.normal` gives the same numbers as an unsharded one); results differ only by the
order of floating-point additions.

Placement: the training set and the state are replicated (`P()`), the `(k, B)` per-dispatch
example indices are split along the batch axis (`P(None, "data")`), and `Trainer.steps`
constrains each gathered batch to `P("data")` and its output state to `P()`. Arrays are
built with `jax.make_array_from_callback`, so each process supplies only the shards of its
own devices — the same code on one device, many local devices, or many hosts (after
`initialize`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from eqx_impl.train.config import ConfigError

__all__ = [
    "AXIS",
    "assert_same_in_every_process",
    "constrain_batch",
    "constrain_replicated",
    "data_mesh",
    "initialize",
    "is_main_process",
    "replicate",
    "shard_indices",
    "to_local",
]

AXIS = "data"


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-host run: `jax.distributed.initialize` with these arguments. Call it in
    every process before anything touches a device (the CLI's `--coordinator`,
    `--num-processes` and `--process-id` do); `jax.devices()` then lists every process's
    devices."""
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


def assert_same_in_every_process(value: int, problem: str) -> None:
    """Raise `ConfigError` (naming `problem`) unless `value` is the same in every process of a
    multi-host run; a no-op in one process."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    values = np.asarray(multihost_utils.process_allgather(np.int64(value)))
    if np.any(values != values.flat[0]):
        raise ConfigError(f"{problem} (values per process: {values.ravel().tolist()}).")


def is_main_process() -> bool:
    """**Returns:** whether this is process 0, the one that writes the run directory."""
    return jax.process_index() == 0


def data_mesh(batch_size: int, devices=None) -> Mesh:
    """A 1-D mesh with axis `"data"` over `devices` (default: `jax.devices()`, every device of
    every process). Raises `ConfigError` unless `batch_size` splits evenly over them.

    **Returns:** a `jax.sharding.Mesh`.
    """
    devices = jax.devices() if devices is None else list(devices)
    n = len(devices)
    if batch_size % n:
        lower, upper = (batch_size // n) * n, -(-batch_size // n) * n
        options = f"train.batch_size={upper}" + (f" or {lower}" if lower else "")
        raise ConfigError(
            f"train.batch_size = {batch_size} does not split over the {n} devices of "
            f"train.data_parallel; use {options} (a multiple of {n}), or set "
            "train.data_parallel=false."
        )
    return Mesh(np.asarray(devices), (AXIS,))


def _put(x, sharding: NamedSharding) -> jax.Array:
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def replicate(tree, mesh: Mesh):
    """Every array leaf of `tree` copied to every device of `mesh` (in each process from its
    own copy, which must be equal across processes: the training set, a state built from
    the seed or read from a checkpoint).

    **Returns:** `tree` with its arrays replaced by replicated `jax.Array`s.
    """
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: _put(x, sharding) if eqx.is_array(x) else x, tree)


def shard_indices(indices, mesh: Mesh) -> jax.Array:
    """The `(k, B)` example indices of one dispatch split along the batch axis: each device
    gathers (and trains on) its `B/n` examples of every step.

    **Returns:** an int32 `jax.Array` sharded as `P(None, "data")`.
    """
    return _put(np.asarray(indices, np.int32), NamedSharding(mesh, P(None, AXIS)))


def constrain_batch(x, mesh: Mesh | None):
    """Inside `jit`: `x` (shape `(B, ...)`) split along its first axis over `mesh` (no-op for
    `mesh=None`). **Returns:** `x`, with the sharding constraint."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(AXIS)))


def constrain_replicated(tree, mesh: Mesh | None):
    """Inside `jit`: every array of `tree` replicated over `mesh` (no-op for `mesh=None`), so
    the state comes back whole on every device, ready to checkpoint.

    **Returns:** `tree`, with the sharding constraints."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding) if eqx.is_array(x) else x, tree)


def to_local(tree):
    """The arrays of a replicated `tree` as ordinary arrays of this process's default device
    (for sampling and evaluation, which run on one device).

    **Returns:** `tree` with its arrays replaced."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)) if eqx.is_array(x) else x, tree)
