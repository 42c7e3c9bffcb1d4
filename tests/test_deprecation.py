"""Deprecations go through a FutureWarning that names the versions and the replacement."""

from __future__ import annotations

import inspect
import warnings

import pytest

from breastus import ConfigError
from breastus._deprecation import deprecated_parameter, deprecation_message, warn_deprecated


@deprecated_parameter("img_size", since="0.2", removed_in="0.4", new="image_size")
def side(image_size: int = 224, *, scale: int = 1) -> int:
    """Return the side."""
    return image_size * scale


@deprecated_parameter("verbose", since="0.3", removed_in="0.5")
def quiet(x: int) -> int:
    return x


def test_warn_deprecated_is_a_future_warning_naming_versions_and_replacement() -> None:
    def old() -> None:
        warn_deprecated("breastus.old()", since="0.2", removed_in="0.4", replacement="breastus.new()")

    with pytest.warns(FutureWarning) as record:
        old()
    message = str(record[0].message)
    assert (
        message
        == "breastus.old() was deprecated in breastus 0.2 and will be removed in 0.4. Use breastus.new() instead."
    )
    assert record[0].filename == __file__  # stacklevel points at user code, not at breastus internals


def test_message_without_replacement() -> None:
    assert deprecation_message("x", "1.1", "2.0") == "x was deprecated in breastus 1.1 and will be removed in 2.0."


def test_deprecated_parameter_forwards_and_warns() -> None:
    with pytest.warns(
        FutureWarning, match=r"'img_size' parameter of side\(\) was deprecated in breastus 0.2 .*0.4.*'image_size'"
    ):
        assert side(img_size=64, scale=2) == 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling never warns
        assert side(image_size=32) == 32
        assert side(16) == 16


def test_deprecated_parameter_refuses_both_spellings() -> None:
    with pytest.warns(FutureWarning), pytest.raises(ConfigError, match=r"both 'img_size'.*'image_size'"):
        side(img_size=64, image_size=32)


def test_dropped_parameter_says_it_has_no_effect() -> None:
    with pytest.warns(FutureWarning, match="has no effect any more.*0.5"):
        assert quiet(3, verbose=True) == 3


def test_signature_and_docstring_are_kept() -> None:
    assert list(inspect.signature(side).parameters) == ["image_size", "scale"]
    assert side.__doc__ == "Return the side."


def test_forwarding_to_unknown_parameter_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="no parameter 'size'"):
        deprecated_parameter("old", since="0.2", removed_in="0.4", new="size")(quiet)
