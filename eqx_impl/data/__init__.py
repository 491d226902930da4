"""Training data: 8×8 digits, 2-D toys, MNIST and CIFAR-10, and a resumable batch stream.

from eqx_impl import data
ds = data.load("digits", seed=0)          # levels 0..16, shape (1, 8, 8)
x = ds.model_data("train")                # bin centres in [-1, 1]
for batch in data.batches(x, 128, seed=0, start_step=step): ...
"""

from eqx_impl.data.batching import batch_indices, batches, epoch_permutation
from eqx_impl.data.dataset import Dataset, estimate_sigma_data, levels_to_unit, unit_to_levels
from eqx_impl.data.digits import digits
from eqx_impl.data.download import ChecksumError, default_cache_dir, fetch, file_checksum
from eqx_impl.data.images import cifar10, mnist, parse_cifar10_records, parse_idx
from eqx_impl.data.registry import available, load
from eqx_impl.data.toys import checkerboard, gmm, gmm_params, moons, swiss_roll

__all__ = [
    "ChecksumError",
    "Dataset",
    "available",
    "batch_indices",
    "batches",
    "checkerboard",
    "cifar10",
    "default_cache_dir",
    "digits",
    "epoch_permutation",
    "estimate_sigma_data",
    "fetch",
    "file_checksum",
    "gmm",
    "gmm_params",
    "levels_to_unit",
    "load",
    "mnist",
    "moons",
    "parse_cifar10_records",
    "parse_idx",
    "swiss_roll",
    "unit_to_levels",
]
