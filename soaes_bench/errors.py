"""One exception type for bad user input: the CLI prints its message as one line and exits with its code."""


class UserError(Exception):
    """A problem the user can fix (bad file, field, flag). `code` is the process exit code (2 by default)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
