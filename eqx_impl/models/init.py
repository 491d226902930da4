r"""Fast construction: a network's structure from an abstract trace, its values from NumPy.

Building a U-Net eagerly compiles a random-number kernel for every distinct parameter
shape, and building it under `jit` compiles one large program: tens of seconds either way
on a small CPU. `initialise` instead traces the constructor abstractly
(`eqx.filter_eval_shape`: shapes only, nothing is computed or compiled) and fills each
layer on the host with the rule its type defines:

- `eqx.nn.Linear` and `eqx.nn.Conv`: weight and bias $\sim U(-1/\sqrt{n}, 1/\sqrt{n})$ with
  $n$ the fan-in (input features, or input channels per group × kernel size); Equinox's
  own default;
- `eqx.nn.GroupNorm` / `eqx.nn.LayerNorm`: weight 1, bias 0;
- `eqx.nn.Embedding` (a conditional network's labels): weight $\sim \mathcal N(0, 1)$,
  Equinox's own default;
- the layers that `zero(model)` selects (a zero-initialised output layer): weight and bias 0.

The values come from `numpy.random.default_rng` seeded from the JAX key, one stream per
layer in tree order, so a key gives the same model on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["initialise"]

_M = TypeVar("_M", bound=eqx.Module)

_LAYERS = (eqx.nn.Linear, eqx.nn.Conv, eqx.nn.GroupNorm, eqx.nn.LayerNorm, eqx.nn.Embedding)


def _fan_in(layer) -> int:
    if isinstance(layer, eqx.nn.Linear):
        return 1 if layer.in_features == "scalar" else int(layer.in_features)
    return int(layer.in_channels // layer.groups * math.prod(layer.kernel_size))


def _arrays(layer) -> list:
    """The weight and bias of `layer` that exist (a layer may have no bias or no affine)."""
    return [a for a in (layer.weight, layer.bias) if a is not None]


def _with(layer, make):
    """`layer` with each of its arrays `a` replaced by `make(a)` (a NumPy array)."""
    return eqx.tree_at(_arrays, layer, [jnp.asarray(make(a), a.dtype) for a in _arrays(layer)])


def _fill(layer, rng: np.random.Generator):
    """`layer` (abstract arrays) with concrete values by its type's rule."""
    if isinstance(layer, eqx.nn.Embedding):  # a weight only, no bias
        w = layer.weight
        return eqx.tree_at(lambda e: e.weight, layer, jnp.asarray(rng.standard_normal(w.shape), w.dtype))
    if isinstance(layer, eqx.nn.GroupNorm | eqx.nn.LayerNorm):
        return eqx.tree_at(
            _arrays,
            layer,
            [jnp.full(a.shape, 1.0 if a is layer.weight else 0.0, a.dtype) for a in _arrays(layer)],
        )
    lim = 1.0 / math.sqrt(_fan_in(layer))
    return _with(layer, lambda a: rng.uniform(-lim, lim, a.shape))


def initialise(
    build: Callable[[jax.Array], _M],
    key: jax.Array,
    *,
    zero: Callable[[_M], tuple] | None = None,
) -> _M:
    """`build(key)`'s structure with its layers initialised on the host (module docstring).

    `build` must create its arrays only through the layer types above; `zero` (optional)
    maps the model to the layers that start at zero. Under a transformation that traces
    `key` (`eqx.filter_eval_shape`, `jit`) this is just `build(key)`.

    **Returns:** the model, every array concrete.
    """
    try:
        seed = np.asarray(jax.random.key_data(key)).ravel().tolist()
    except jax.errors.TracerArrayConversionError:  # a traced key (under eval_shape, jit): no values to draw
        return build(key)
    abstract = eqx.filter_eval_shape(build, key)
    layers = [x for x in jax.tree.leaves(abstract, is_leaf=lambda n: isinstance(n, _LAYERS)) if isinstance(x, _LAYERS)]
    streams = np.random.SeedSequence(seed).spawn(len(layers))
    filled = iter([_fill(layer, np.random.default_rng(s)) for layer, s in zip(layers, streams, strict=True)])
    model = jax.tree.map(
        lambda n: next(filled) if isinstance(n, _LAYERS) else n, abstract, is_leaf=lambda n: isinstance(n, _LAYERS)
    )
    if zero is not None:
        chosen = tuple(zero(model))
        model = eqx.tree_at(
            lambda m: tuple(zero(m)), model, tuple(_with(layer, lambda a: np.zeros(a.shape)) for layer in chosen)
        )
    leftover = [x for x in jax.tree.leaves(model) if isinstance(x, jax.ShapeDtypeStruct)]
    if leftover:
        raise TypeError(
            f"initialise: {len(leftover)} array(s) of the model (first of shape {leftover[0].shape}) are "
            "not in a Linear, Conv, norm or Embedding layer, so no rule initialises them; build the model eagerly instead."
        )
    return model
