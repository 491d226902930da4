r"""A random probe network in float64: a fixed tanh MLP that stands in for a trained denoiser
wherever both packages must evaluate the same network (the pre-flight's loss check, the
equivalence tests of losses and samplers).

For one example $z$ of any shape, $h_0 = (\operatorname{vec} z, \tanh(\lambda/10), \sin(\lambda/4))$,
$h_{k+1} = \tanh(h_k W_k + b_k)$ for the hidden layers and $h_K W_K + b_K$ for the last,
reshaped like $z$.
"""

from __future__ import annotations

import numpy as np

from reference._typing import FloatArray

__all__ = ["ProbeNet"]


class ProbeNet:
    """`layers`: `[(W, b), ...]` with `W` of shape `(fan_in, fan_out)`; the first takes
    `z.size + 2` inputs, the last gives `z.size` outputs."""

    def __init__(self, layers):
        self.layers = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in layers]

    def __call__(self, z, logsnr) -> FloatArray:
        z = np.asarray(z, np.float64)
        lam = np.float64(logsnr)
        h = np.concatenate([z.reshape(-1), [np.tanh(lam / 10.0), np.sin(lam / 4.0)]])
        for k, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if k < len(self.layers) - 1:
                h = np.tanh(h)
        return h.reshape(z.shape)
