r"""Mixed precision: in which dtype and at which matmul precision the network computes.

A `Precision` policy says how the *network's* convolutions and matmuls run; everything
else stays float32 whatever the policy: the master parameters, the optimiser state and
EMA, the loss and its reduction, and all $\lambda$ / schedule / weighting / proposal math.

| policy     | network layers (conv, linear)  | matmul/conv precision | use |
|------------|--------------------------------|-----------------------|-----|
| `float32`  | float32                        | full float32          | CPU default; exact |
| `tf32`     | float32 storage                | TF32 tensor cores     | float32 on Ampere+ at speed |
| `bfloat16` | bfloat16 weights and activations | bfloat16 tensor cores | GPU/TPU default |

Under `bfloat16` the layers' weights are cast to bfloat16 inside the forward pass (the
gradient flows back to the float32 masters through the cast), activations between layers
are bfloat16, and the numerically delicate parts compute in float32: group normalisation,
the attention softmax, the $\lambda$-embedding's sinusoids and the Fourier features. The
network's output is returned in float32 for `EpsModel`'s conversion to $\hat\epsilon$.

`auto` picks `bfloat16` on GPUs and TPUs (their tensor cores run bfloat16 at 2x TF32 and
much more than float32) and `float32` on CPUs (XLA:CPU has no fast bfloat16 kernels: it
would emulate them, slower than float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp

from eqx_impl.names import PRECISIONS

__all__ = ["PRECISIONS", "Precision", "cast_layers", "resolve_precision"]


# What `jax.default_matmul_precision` is set to while the network runs.
_MATMUL = {"float32": "highest", "tf32": "tensorfloat32", "bfloat16": "default"}


def resolve_precision(name: str, backend: str | None = None) -> str:
    """`auto` → `bfloat16` on `gpu`/`tpu`, `float32` on `cpu` (the default backend when
    `backend` is None); other names are returned unchanged after checking them.

    **Returns:** one of `float32`, `tf32`, `bfloat16`.
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}.")
    if name != "auto":
        return name
    backend = jax.default_backend() if backend is None else backend
    return "float32" if backend == "cpu" else "bfloat16"


def cast_layers(tree, dtype):
    """The arrays of every `eqx.nn.Linear` and `eqx.nn.Conv` in `tree` cast to `dtype`
    (normalisation layers and everything else keep theirs).

    **Returns:** a pytree shaped like `tree`.
    """

    def is_layer(node) -> bool:
        return isinstance(node, eqx.nn.Linear | eqx.nn.Conv)

    def cast(node):
        if not is_layer(node):
            return node
        return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, node)

    return jax.tree.map(cast, tree, is_leaf=is_layer)


@dataclass(frozen=True)
class Precision:
    """A resolved policy (`float32`, `tf32` or `bfloat16`; see the module docstring)."""

    name: str = "float32"

    def __post_init__(self):
        if self.name not in _MATMUL:
            raise ValueError(
                f"Precision takes float32, tf32 or bfloat16, got {self.name!r}; resolve 'auto' "
                "with resolve_precision first."
            )

    @classmethod
    def create(cls, name: str = "auto", backend: str | None = None) -> Precision:
        """**Returns:** the policy `name`, `auto` resolved for `backend` (see `resolve_precision`)."""
        return cls(resolve_precision(name, backend))

    @property
    def compute_dtype(self):
        """The dtype of the network's layers and activations."""
        return jnp.bfloat16 if self.name == "bfloat16" else jnp.float32

    @property
    def matmul_precision(self) -> str:
        """The value of `jax.default_matmul_precision` while the network is traced."""
        return _MATMUL[self.name]

    def cast(self, model):
        """`model` with its linear and convolution layers in the compute dtype (a no-op for
        float32 policies). **Returns:** a pytree shaped like `model`."""
        return model if self.compute_dtype == jnp.float32 else cast_layers(model, self.compute_dtype)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Trace (jit) the network's computations inside this context."""
        with jax.default_matmul_precision(self.matmul_precision):
            yield


FULL_FLOAT32 = Precision("float32")


def float32_norm(norm, x):
    """`norm(x)` computed in float32 (whatever the activations' dtype), returned in `x.dtype`:
    means and variances of bfloat16 activations lose too many digits.

    **Returns:** shape and dtype of `x`.
    """
    return norm(x.astype(jnp.float32)).astype(x.dtype)
