"""Errors caused by what the user gave (flags, config values, paths, files).

The CLI turns any `InputError` into one line on stderr and exit code 2; everything else is
a bug or a failed run and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input: a message a user can act on, in one line."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
