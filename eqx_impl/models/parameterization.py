r"""`EpsModel`: a network predicting any target, seen as the library's ε-model."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

import _checks
from eqx_impl._typing import Array, ArrayLike, Data, Float, Int, PRNGKeyArray, ScalarLike
from eqx_impl.targets import _edm_denominator, eps_from_prediction

__all__ = ["EpsModel"]


class EpsModel(eqx.Module):
    r"""Wrap a network $\mathrm{net}(z_{\mathrm{in}}, \lambda) \to \hat y$ as an ε-model.

    `eps_model = EpsModel(net, target="v")`; `eps_model(z, logsnr)` returns
    $\hat\epsilon(z; \lambda)$ for one example (the library's model convention). The network
    sees $\lambda$ and
    $$z_{\mathrm{in}} = z/\sqrt{D} = c_{\mathrm{in}} z_{\mathrm{edm}}\ \text{if `normalize_input`,
      else } z, \qquad D = \sigma^2 + \sigma_d^2\alpha^2,$$
    where $c_{\mathrm{in}} = (\sigma_{\mathrm{edm}}^2 + \sigma_d^2)^{-1/2}$ and
    $z_{\mathrm{edm}} = z/\alpha$: unit variance when the data has variance $\sigma_d^2$.
    `normalize_input` defaults to `True` for `"F"` (EDM) and `False` otherwise (VP $z$
    already has variance between $\min(1, s^2)$ and $\max(1, s^2)$ for data variance $s^2$).
    EDM's $c_{\mathrm{noise}} = -\lambda/8$ carries the same information as $\lambda$; the
    networks' `NoiseEmbedding` periods are set in units of $\lambda$. The output $\hat y$ of
    `target` is converted by `eps_from_prediction` (for `"F"` that applies
    $c_{\mathrm{skip}}$ and $c_{\mathrm{out}}$).
    """

    net: Callable[..., Array]
    target: str = eqx.field(static=True)
    sigma_data: float = eqx.field(static=True)
    normalize_input: bool = eqx.field(static=True)

    def __init__(
        self,
        net: Callable[..., Array],
        target: str = "eps",
        sigma_data: float = 0.5,
        normalize_input: bool | None = None,
    ):
        self.net = net
        self.target = _checks.target(target)
        self.sigma_data = _checks.positive("sigma_data", sigma_data)
        self.normalize_input = (target == "F") if normalize_input is None else bool(normalize_input)

    def __call__(
        self, z: Data, logsnr: ScalarLike, *, key: PRNGKeyArray | None = None, label: Int[ArrayLike, ""] | None = None
    ) -> Float[Array, "*dims"]:
        r"""$\hat\epsilon(z; \lambda)$ for one example; `key` (dropout) and `label` (class, for a
        conditional network; `None`: none passed) go to the network.

        **Returns:** $\hat\epsilon$, shape like `z`.
        """
        logsnr = jnp.asarray(logsnr, dtype=z.dtype)
        z_in = z
        if self.normalize_input:
            z_in = z * jax.lax.rsqrt(_edm_denominator(logsnr, self.sigma_data))
        extra = {k: v for k, v in (("key", key), ("label", label)) if v is not None}
        prediction = self.net(z_in, logsnr, **extra)
        if prediction.shape != z.shape:
            raise ValueError(
                f"The network returned shape {prediction.shape} for an input of shape {z.shape}; "
                "it must predict one value per input dimension."
            )
        return eps_from_prediction(self.target, prediction, z, logsnr, self.sigma_data)
