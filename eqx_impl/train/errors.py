"""The error of a configuration that cannot be used (shared by `config`, which checks values,
and `registry`, whose constructors check arguments)."""

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration file, key or value that cannot be used; the message says how to fix it."""
