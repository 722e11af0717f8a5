"""The error a command shows as one line (exit code 2): a setting, a credential or a broker the user must fix."""

from __future__ import annotations


class UserFacingError(Exception):
    """``str()`` is one line for the user that says what to fix; never a secret, never a traceback."""
