"""Deprecations: warn for at least one minor release before anything public changes.

breastus follows semantic versioning (see the "API stability" page of the docs):
a public name, parameter or behaviour is never removed or changed in a minor or
patch release without first emitting a :class:`FutureWarning` for at least one
minor release. The warning names the version that deprecated it, the version
that will remove it, and what to use instead.

Two helpers cover the usual cases::

    from breastus._deprecation import deprecated_parameter, warn_deprecated

    @deprecated_parameter("img_size", since="0.2", removed_in="0.4", new="image_size")
    def build(image_size: int = 224) -> None: ...

    def old_function() -> None:
        warn_deprecated("old_function()", since="0.2", removed_in="0.4", replacement="new_function()")
        ...

:class:`FutureWarning` (not :class:`DeprecationWarning`) is used because it is
shown to end users by default, as in scikit-learn.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from breastus._errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")


def deprecation_message(what: str, since: str, removed_in: str, replacement: str | None = None) -> str:
    """The text of a deprecation warning.

    Parameters
    ----------
    what : str
        The deprecated thing as users write it, e.g. ``"The 'img_size' parameter of build()"``.
    since : str
        Version that deprecated it.
    removed_in : str
        Version that will remove it.
    replacement : str, optional
        What to use instead.

    Returns
    -------
    str

    Examples
    --------
    >>> deprecation_message("old()", "0.2", "0.4", "new()")
    'old() was deprecated in breastus 0.2 and will be removed in 0.4. Use new() instead.'

    """
    text = f"{what} was deprecated in breastus {since} and will be removed in {removed_in}."
    if replacement:
        text += f" Use {replacement} instead."
    return text


def warn_deprecated(
    what: str, since: str, removed_in: str, replacement: str | None = None, stacklevel: int = 3
) -> None:
    """Emit a :class:`FutureWarning` saying that ``what`` is deprecated.

    Parameters
    ----------
    what : str
        The deprecated thing, e.g. ``"breastus.old_function()"``.
    since : str
        Version that deprecated it.
    removed_in : str
        Version that will remove it.
    replacement : str, optional
        What to use instead; named in the message.
    stacklevel : int, default=3
        Passed to :func:`warnings.warn`; 3 points at the caller of the function
        that calls ``warn_deprecated``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_deprecated("old()", since="0.2", removed_in="0.4", replacement="new()")
    >>> caught[0].category.__name__, str(caught[0].message)
    ('FutureWarning', 'old() was deprecated in breastus 0.2 and will be removed in 0.4. Use new() instead.')

    """
    warnings.warn(deprecation_message(what, since, removed_in, replacement), FutureWarning, stacklevel=stacklevel)


def deprecated_parameter(
    old: str, since: str, removed_in: str, new: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: warn when keyword argument ``old`` is passed, and forward it to ``new``.

    The decorated function keeps its signature (without ``old``). Passing ``old``
    by keyword emits a :class:`FutureWarning`; when ``new`` is given the value is
    passed on as ``new``, and passing both raises :class:`~breastus.ConfigError`.
    When ``new`` is ``None`` the old parameter is simply dropped after the warning
    (its behaviour is gone; the message says so).

    Parameters
    ----------
    old : str
        The deprecated keyword.
    since : str
        Version that deprecated it.
    removed_in : str
        Version that will remove it.
    new : str, optional
        The keyword that replaces it.

    Returns
    -------
    callable
        The decorator.

    Examples
    --------
    >>> @deprecated_parameter("img_size", since="0.2", removed_in="0.4", new="image_size")
    ... def side(image_size: int = 224) -> int:
    ...     return image_size
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     side(img_size=64)
    64

    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        name = getattr(function, "__qualname__", repr(function))
        if new is not None and new not in inspect.signature(function).parameters:
            raise TypeError(f"deprecated_parameter: {name}() has no parameter {new!r} to forward {old!r} to.")
        what = f"The {old!r} parameter of {name}()"
        replacement = f"{new!r}" if new is not None else None
        if new is None:
            what += " has no effect any more; it"

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if old in kwargs:
                warn_deprecated(what, since, removed_in, replacement)
                value = kwargs.pop(old)
                if new is not None:
                    if new in kwargs:
                        raise ConfigError(
                            f"{name}() got both {old!r} (deprecated) and {new!r}; pass only {new!r}={value!r}."
                        )
                    kwargs[new] = value
            return function(*args, **kwargs)

        return wrapper

    return decorate
