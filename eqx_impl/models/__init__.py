"""Denoiser networks and output parameterisations for training.

Every network acts on one example, `net(z, logsnr, *, key=None) -> prediction`;
`EpsModel(net, target)` turns it into the library's `eps_model(z, logsnr) -> ε̂`.
"""

from eqx_impl.models.attention import SelfAttention
from eqx_impl.models.count import count_params
from eqx_impl.models.embeddings import NoiseEmbedding, fourier_features, sinusoidal_embedding
from eqx_impl.models.mlp import MLP
from eqx_impl.models.parameterization import EpsModel
from eqx_impl.models.resblock import ResBlock
from eqx_impl.models.unet import UNet

__all__ = [
    "MLP",
    "EpsModel",
    "NoiseEmbedding",
    "ResBlock",
    "SelfAttention",
    "UNet",
    "count_params",
    "fourier_features",
    "sinusoidal_embedding",
]
