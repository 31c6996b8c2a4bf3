"""The root of every user error: bad input, config, data, a missing file's fix. The CLI prints one of these as one
line, `pgpo <command>: error: <message>`, and exits 2, never a traceback; the message names the file, row or field
and the fix (an error about many rows: that line, then the rows indented, one per line; see `listed`). A path the
user gave that cannot be written, or a folder given for a file (and the reverse), is printed the same way
(`os_error_line`). An error that is neither is a bug and keeps its traceback. tests/util/test_user_errors.py walks
every UserError class through the CLI."""

import errno

NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
"""A path the user gave cannot be written: permissions, or a read-only file system (a shared model store)."""


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


def listed(headline: str, items: list[str], limit: int = 20) -> str:
    """An error about many rows: the one-line headline (the file, the count, the fix), then the first `limit`
    items indented one per line (each names its file:row), so the first line alone still says what and how."""
    more = [f"... and {len(items) - limit} more"] if len(items) > limit else []
    return "\n  ".join([headline, *items[:limit], *more])


def os_error_line(e: OSError) -> str | None:
    """One line for an OSError on a path the user gave (a read-only folder, a folder where a file is expected, a
    file where a folder is): the path, what is wrong and the fix; None for any other OSError (a bug, or the
    system's: it keeps its traceback)."""
    fix = {**dict.fromkeys(NOT_WRITABLE, "make it writable, or give another path (--out)"),
           errno.EISDIR: "a folder where a file is expected: give the file",
           errno.ENOTDIR: "a file where a folder is expected: give the folder, or move the file aside"}.get(e.errno)
    if fix is None or not e.filename:
        return None
    return f"{e.filename}: {(e.strerror or type(e).__name__).lower()}: {fix}"


class DataError(UserError, ValueError):
    """Bad input data or a broken record between stages; the message names file, row and field of every problem
    found."""
