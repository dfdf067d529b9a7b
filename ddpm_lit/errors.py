"""Errors that end a run with one message for the user instead of a traceback."""


class UserError(RuntimeError):
    """A problem the user can fix (bad config value, missing or corrupted data)."""


class DataError(UserError):
    """The data set is missing, truncated or corrupted, or could not be fetched."""


class ConfigError(UserError):
    """A config value that cannot work; raised before any heavy work starts."""
