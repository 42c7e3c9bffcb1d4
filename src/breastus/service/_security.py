"""Bearer-token access to the service: the token comes from a file and is compared in constant time.

This module is private; use the names re-exported by :mod:`breastus.service`.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from breastus._errors import ConfigError

MIN_TOKEN_LENGTH = 16
"""Shortest token accepted (characters), so a guessable word is refused."""


def load_token(path: str | Path) -> str:
    """Read the bearer token from a file (surrounding whitespace and the final newline are dropped).

    Keeping the token in a file, not on the command line, keeps it out of
    ``ps`` listings and shell histories.

    Parameters
    ----------
    path : str or pathlib.Path
        A text file holding the token on its first line.

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, or the token is shorter than
        :data:`MIN_TOKEN_LENGTH` characters or contains whitespace.

    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Token file {str(file)!r} cannot be read ({exc}); write the token on its first line, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))' > token.txt`."
        ) from exc
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(
            f"Token file {str(file)!r} must hold one token of at least {MIN_TOKEN_LENGTH} characters without "
            f"spaces. Got {len(token)} characters; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    return token


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant time.

    Parameters
    ----------
    authorization : str or None
        The request's ``Authorization`` header.
    token : str
        The expected token.

    Returns
    -------
    bool

    """
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))
