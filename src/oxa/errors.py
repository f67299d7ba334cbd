"""User-facing errors: the CLI prints these as one line and exits with status 2."""


class OxaError(Exception):
    """An error caused by the user's input or settings, with a message that says what and where."""


class RecordError(OxaError):
    """A record file is malformed or a record lacks a field; the message names file, line and field."""
