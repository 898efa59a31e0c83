"""The one exception type users see: its message is one line naming the problem and the fix."""


class FastStyleError(Exception):
    """A user-facing error. Entry points print ``error: <message>`` and exit with status 2."""
