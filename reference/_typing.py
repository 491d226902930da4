"""Shared type aliases of the float64 reference.

NumPy ufuncs return a NumPy scalar (`np.float64`, a `float` subclass) for 0-d input and an
array otherwise; `FloatArray` names both.
"""

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64] | np.float64

__all__ = ["FloatArray"]
