"""Test configuration: float64 reference, strict JAX dtype promotion, hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE): `ci` (default; bounded, derandomised, no
deadline, so CI is reproducible), `thorough` (many more examples), `dev` (quick).
"""

import os

import jax
from hypothesis import HealthCheck, settings

# Mixing float64 NumPy arrays into float32 JAX code must be explicit.
jax.config.update("jax_numpy_dtype_promotion", "strict")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=25, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.register_profile("dev", max_examples=8, derandomize=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
