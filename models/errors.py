"""The one exception type the offline job raises for bad input or parameters."""


class InputError(ValueError):
    """Bad input or parameter; the message names the file, line or parameter at fault."""
