r"""`EpsModel`: a network predicting any target, seen as the library's ε-model (float64).

The twin of `eqx_impl.models.parameterization`. For one example,
$$\hat\epsilon(z;\lambda) = \texttt{eps\_from\_prediction}\big(y,\ \mathrm{net}(z_{\mathrm{in}}, \lambda),\ z,\ \lambda\big),
  \qquad z_{\mathrm{in}} = \begin{cases} z/\sqrt{D} & \texttt{normalize\_input} \\ z & \text{otherwise,}\end{cases}$$
with $D = \sigma^2 + \sigma_d^2\alpha^2 = \alpha^2(\sigma_{\mathrm{edm}}^2 + \sigma_d^2)$, so
$z/\sqrt D = c_{\mathrm{in}} z_{\mathrm{edm}}$ (EDM's input scaling, $z_{\mathrm{edm}} = z/\alpha$).
"""

from __future__ import annotations

import numpy as np

import _checks
from reference._typing import FloatArray
from reference.targets import _edm_denominator, eps_from_prediction

__all__ = ["EpsModel"]


class EpsModel:
    r"""Wrap a network $\mathrm{net}(z_{\mathrm{in}}, \lambda) \to \hat y$ of `target` $y$ as an ε-model.

    `EpsModel(net, target="v")(z, logsnr)` is $\hat\epsilon(z;\lambda)$ for one example.
    `normalize_input=None` means `True` for `"F"` (EDM) and `False` otherwise.
    """

    def __init__(self, net, target: str = "eps", sigma_data: float = 0.5, normalize_input: bool | None = None):
        self.net = net
        self.target = _checks.target(target)
        self.sigma_data = _checks.positive("sigma_data", sigma_data)
        self.normalize_input = (target == "F") if normalize_input is None else bool(normalize_input)

    def __call__(self, z, logsnr, *, rng=None, label=None) -> FloatArray:
        r"""$\hat\epsilon(z;\lambda)$ for one example; `rng` (dropout) and `label` (a class, for
        a conditional network) go to the network when given.

        **Returns:** $\hat\epsilon$, a float64 array shaped like `z`.
        """
        z = np.asarray(z, dtype=np.float64)
        logsnr = np.float64(logsnr)
        z_in = z / np.sqrt(_edm_denominator(logsnr, self.sigma_data)) if self.normalize_input else z
        extra = {k: v for k, v in (("rng", rng), ("label", label)) if v is not None}
        prediction = np.asarray(self.net(z_in, logsnr, **extra), dtype=np.float64)
        if prediction.shape != z.shape:
            raise ValueError(
                f"The network returned shape {prediction.shape} for an input of shape {z.shape}; "
                "it must predict one value per input dimension."
            )
        return eps_from_prediction(self.target, prediction, z, logsnr, self.sigma_data)
