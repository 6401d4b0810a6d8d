"""Errors of the phantom stage."""

from __future__ import annotations

from LesionResponseLib.errors import LesionResponseError, describe


class PhantomError(LesionResponseError, ValueError):
    """A phantom option out of range (also a ``ValueError``, as callers of a bad argument expect)."""


def bad_option(name: str, value, allowed: str) -> PhantomError:
    """The error for option ``name`` = ``value`` outside ``allowed`` (named in the message as the fix)."""
    return PhantomError(describe(f"phantom option {name}={value!r} is not supported",
                                 fix=f"Use {name} {allowed}."))
