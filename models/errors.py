"""The one exception type the offline job raises for bad input or parameters, and `naming_the_file` for
write errors that do not say which file they were writing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from os import PathLike


class InputError(ValueError):
    """Bad input or parameter; the message names the file, line or parameter at fault."""


class RowProblem(ValueError):
    """A problem at one row of interactions being converted (0-based, in reading order).

    Raised where the row's position in its file is not known; the reader that knows it (line of a CSV, file and
    row of a Parquet dataset) turns it into an InputError.
    """

    def __init__(self, row: int, message: str) -> None:
        super().__init__(f"row {row}: {message}")
        self.row = row
        self.message = message


@contextlib.contextmanager
def naming_the_file(path: str | PathLike[str]) -> Iterator[None]:
    """Re-raise an OSError that names no file (Python's file writes, numpy's) as the same error naming `path`."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
