r"""FLOPs of a JAX function's convolutions and matrix products, counted from its jaxpr.

XLA's cost analysis on a GPU does not see inside the cuDNN convolution calls (it reports
a fraction of the real work), so MFU is computed from this count instead. It walks the
jaxpr of the function (forward, or a whole training step with its backward pass) and adds,
for every

- `dot_general`: $2\cdot\prod(\text{batch})\prod(\text{free}_a)\prod(\text{free}_b)\prod(\text{contracted})$;
- `conv_general_dilated`: $2\cdot N\cdot C_{\mathrm{out}}\cdot\prod(\text{output spatial})\cdot
  (C_{\mathrm{in}}/G)\cdot\prod(\text{kernel spatial})$ (the backward pass's convolutions
  appear as convolutions of their own, so they are counted the same way);

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


def _conv_flops(eqn) -> int:
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    dn = eqn.params["dimension_numbers"]
    out_spatial = math.prod(out[i] for i in dn.out_spec[2:])
    kernel_spatial = math.prod(rhs[i] for i in dn.rhs_spec[2:])
    in_per_group = rhs[dn.rhs_spec[1]]  # the kernel's input-feature axis holds C_in / G
    batch, out_features = out[dn.out_spec[0]], out[dn.out_spec[1]]
    return 2 * batch * out_features * out_spatial * in_per_group * kernel_spatial


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
            for sub in jex_core.subjaxprs(eqn):
                total += _jaxpr_flops(sub)
    return total


def matmul_flops(fn, *args, **kwargs) -> int:
    """FLOPs of the convolutions and matrix products of `fn(*args, **kwargs)` (traced, not
    run; any pytree arguments, arrays may be `jax.ShapeDtypeStruct`s). A `while` loop's
    body counts once.

    **Returns:** a Python `int`.
    """
    closed, _, _ = eqx.filter_make_jaxpr(fn)(*args, **kwargs)
    return _jaxpr_flops(closed.jaxpr)
