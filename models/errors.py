"""The one exception type the offline job raises for bad input or parameters."""


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
