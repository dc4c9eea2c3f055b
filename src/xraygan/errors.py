"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class XrayganError(Exception):
    """A problem with the user's input or options; the message says what and how to fix it."""
