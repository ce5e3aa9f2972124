"""Errors a user can cause and fix; the CLIs turn them into one line and exit code 2."""


class UserError(Exception):
    """Bad input from the user (symbol, dates, file, config): report it, never a traceback."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value is invalid; the message names the field and what it allows."""


class VenueError(Exception):
    """Anything that went wrong talking to an exchange, whichever one: a venue catches this
    without knowing whose client raised it."""


class OutcomeUnknown(VenueError):
    """The exchange never confirmed an order either way: ask it before trading again."""
