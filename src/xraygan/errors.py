"""Errors a user can cause. The CLI prints them as one line (no traceback).

Exit statuses of ``xraygan`` (see ``xraygan --help``): 0 success; 2 an invalid command line or
config (:class:`UsageError` and argparse's own errors), detected before any input is read; 1 every
other problem (:class:`XrayganError`: missing or unreadable input, a diverged training run, ...,
and unexpected internal errors); 130 interrupted by Ctrl-C.
"""


class XrayganError(Exception):
    """A problem with the user's input or options; the message says what and how to fix it (exit 1).

    The message is kept to one printable line: control characters that come from the data (a file
    or class name holding a newline, say) are written as escapes such as ``\\n``.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


def one_line(text: str) -> str:
    """``text`` with every control character (newline, carriage return, NUL, ...) written as an escape."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in text)


class UsageError(XrayganError):
    """An invalid command line or config value, found before any input is read (exit 2)."""


class TrainingDiverged(XrayganError):
    """Training diverged and rolling back with lower learning rates did not help (exit 1)."""
