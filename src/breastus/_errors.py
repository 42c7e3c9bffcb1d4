"""Exceptions raised by breastus.

Every error breastus raises on purpose derives from :class:`BreastusError` and
also from the built-in exception an existing ``except`` clause would expect::

    BreastusError (Exception)
    ├── DataError (ValueError)            bad images, folders, manifests, masks
    ├── ConfigError (ValueError)          an invalid parameter value
    ├── WeightsUnavailableError (RuntimeError)
    │                                     requested pretrained weights cannot be obtained
    └── CheckpointError (ValueError)      unreadable, unsafe or incompatible checkpoint

Messages say what went wrong, where (the file), what is allowed and how to fix it.
"""

from __future__ import annotations


class BreastusError(Exception):
    """Base class of every error raised on purpose by breastus."""


class DataError(BreastusError, ValueError):
    """An image, mask, folder or manifest cannot be used as given."""


class ConfigError(BreastusError, ValueError):
    """A parameter has a value outside what is allowed."""


class WeightsUnavailableError(BreastusError, RuntimeError):
    """Requested pretrained weights cannot be downloaded or found locally."""


class CheckpointError(BreastusError, ValueError):
    """A checkpoint cannot be read, is unsafe, or does not fit the request."""
