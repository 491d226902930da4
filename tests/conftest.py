"""Test configuration: float64 reference, strict JAX dtype promotion, hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE): `ci` (default; bounded, derandomised, no
deadline, so CI is reproducible), `thorough` (many more examples), `dev` (quick).
"""

import os

import jax
from hypothesis import HealthCheck, settings

# Mixing float64 NumPy arrays into float32 JAX code must be explicit.
jax.config.update("jax_numpy_dtype_promotion", "strict")
# The float32 tolerances assume IEEE float32 products. On Ampere and later GPUs JAX's default
# matmul/convolution precision is TF32 (10-bit mantissa, ~1e-3 relative), so the suite asks
# for full float32 there; on the CPU this changes nothing. A JAX_DEFAULT_MATMUL_PRECISION
# in the environment wins.
if "JAX_DEFAULT_MATMUL_PRECISION" not in os.environ:
    jax.config.update("jax_default_matmul_precision", "highest")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.register_profile("dev", max_examples=8, derandomize=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
