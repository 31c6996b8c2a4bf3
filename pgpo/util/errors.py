"""The root of every user error: bad input, config, data, a missing file's fix. The CLI prints one of these as one
line, `pgpo <command>: error: <message>`, and exits 2, never a traceback; the message names the file, row or field
and the fix. An error that is not a UserError is a bug and keeps its traceback."""


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class DataError(UserError, ValueError):
    """Bad input data or a broken record between stages; the message names file, row and field of every problem
    found."""
