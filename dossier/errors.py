"""Errors a user can cause. Each is reported as one line with exit code 2, never a traceback."""

import click


class DossierError(click.ClickException):
    """A problem with the user's input: config, model, weights, data or options."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line: a multi-line library message would read like a traceback.
        super().__init__(" ".join(str(message).split()))


class ConfigError(DossierError):
    """The config file is missing, malformed or invalid."""


class ModelError(DossierError):
    """The model cannot be built, loaded or run as configured."""


class DataError(DossierError):
    """The dataset is missing, empty or unreadable."""
