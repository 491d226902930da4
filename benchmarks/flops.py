r"""FLOPs of a JAX function's convolutions and matrix products, counted from its jaxpr.

XLA's cost analysis on a GPU does not see inside the cuDNN convolution calls (it reports
a fraction of the real work), so MFU is computed from this count instead. It walks the
jaxpr of the function (forward, or a whole training step with its backward pass) and adds,
for every

- `dot_general`: $2\cdot\prod(\text{batch})\prod(\text{free}_a)\prod(\text{free}_b)\prod(\text{contracted})$;
- `conv_general_dilated`: $2\cdot N\cdot C_{\mathrm{out}}\cdot(C_{\mathrm{in}}/G)\cdot T$, with
  $T$ the (output position, kernel tap) pairs that read real input rather than zero
  padding, as XLA's own cost analysis counts them (the backward pass's convolutions appear
  as convolutions of their own and are counted the same way);

through nested jaxprs (`jit`, `custom_vjp`, `remat`, `cond`: the largest branch) and
`scan` / `while` bodies (times the trip count for `scan`). A multiply-add counts 2.
Element-wise work (norms, activations, the optimiser) is not counted: MFU is quoted for
the tensor-core work only, as is usual.
"""

from __future__ import annotations

import math

import equinox as eqx
from jax.extend import core as jex_core

__all__ = ["matmul_flops"]


def _dot_flops(eqn) -> int:
    a, b = (v.aval.shape for v in eqn.invars)
    (contract_a, contract_b), (batch_a, batch_b) = eqn.params["dimension_numbers"]
    batch = math.prod(a[i] for i in batch_a)
    contracted = math.prod(a[i] for i in contract_a)
    free_a = math.prod(d for i, d in enumerate(a) if i not in (*contract_a, *batch_a))
    free_b = math.prod(d for i, d in enumerate(b) if i not in (*contract_b, *batch_b))
    return 2 * batch * free_a * free_b * contracted


def _valid_taps(size: int, out: int, kernel: int, stride: int, pad_lo: int, lhs_dil: int, rhs_dil: int) -> int:
    """Pairs (output position, kernel tap) along one spatial axis that read a real input
    element, not padding or a hole of the input's dilation."""
    extent = (size - 1) * lhs_dil + 1
    count = 0
    for o in range(out):
        for k in range(kernel):
            i = o * stride - pad_lo + k * rhs_dil
            count += 0 <= i < extent and i % lhs_dil == 0
    return count


def _conv_flops(eqn) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    out = eqn.outvars[0].aval.shape
    dn, p = eqn.params["dimension_numbers"], eqn.params
    taps = 1
    for axis, (lhs_i, rhs_i, out_i) in enumerate(zip(dn.lhs_spec[2:], dn.rhs_spec[2:], dn.out_spec[2:], strict=True)):
        taps *= _valid_taps(
            lhs[lhs_i],
            out[out_i],
            rhs[rhs_i],
            p["window_strides"][axis],
            p["padding"][axis][0],
            p["lhs_dilation"][axis],
            p["rhs_dilation"][axis],
        )
    in_per_group = rhs[dn.rhs_spec[1]]  # the kernel's input-feature axis holds C_in / G
    batch, out_features = out[dn.out_spec[0]], out[dn.out_spec[1]]
    return 2 * batch * out_features * in_per_group * taps


def _jaxpr_flops(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * _jaxpr_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_jaxpr_flops(branch.jaxpr) for branch in eqn.params["branches"])
        else:
            total += sum(_jaxpr_flops(sub) for sub in _params_jaxprs(eqn.params.values()))
    return total


def _params_jaxprs(values):
    """The jaxprs among an equation's parameters (`jit`'s `jaxpr`, `custom_vjp`'s `call_jaxpr`...)."""
    for value in values:
        if isinstance(value, jex_core.ClosedJaxpr):
            yield value.jaxpr
        elif isinstance(value, jex_core.Jaxpr):
            yield value
        elif isinstance(value, tuple | list):
            yield from _params_jaxprs(value)


def matmul_flops(fn, *args, **kwargs) -> int:
    """FLOPs of the convolutions and matrix products of `fn(*args, **kwargs)` (traced, not
    run; any pytree arguments, arrays may be `jax.ShapeDtypeStruct`s). A `while` loop's
    body counts once.

    **Returns:** a Python `int`.
    """
    closed, _, _ = eqx.filter_make_jaxpr(fn)(*args, **kwargs)
    return _jaxpr_flops(closed.jaxpr)
