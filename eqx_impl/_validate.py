"""Argument checks: the same checks and messages as the reference, so errors read alike."""

from reference._validate import finite, logsnr_range, positive, same_shape

__all__ = ["finite", "logsnr_range", "positive", "same_shape"]
