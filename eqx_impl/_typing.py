"""Shared jaxtyping aliases."""

from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

Scalar = Float[Array, ""]
ScalarLike = Float[ArrayLike, ""]
LogSNR = Float[ArrayLike, "*shape"]
Data = Float[Array, "*dims"]

__all__ = ["Array", "ArrayLike", "Data", "Float", "Int", "LogSNR", "PRNGKeyArray", "Real", "Scalar", "ScalarLike"]
