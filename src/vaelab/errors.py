"""Errors that reach the user as a clear message instead of a traceback.

Everything vaelab raises on purpose for a user mistake (bad data, bad arguments, a corrupt
checkpoint, an unwritable directory) is a ``VaelabError``; the CLI prints its message and exits
with ``exit_code``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VaelabError(Exception):
    """A problem the user can fix; its message says what and where."""

    exit_code = 1


class DataError(VaelabError):
    """A data file is missing, unreadable or malformed."""


class DataNotFoundError(DataError):
    """The data files are not on disk and could not be downloaded."""


class CheckpointError(VaelabError):
    """A checkpoint or run config is corrupt, foreign or from a newer vaelab."""


class ConfigError(VaelabError, ValueError):
    """A configuration value is out of range, of the wrong type, or does not fit the other settings.

    ``key`` is the field's dotted name (``train.batch_size``), for callers that point at the option. It is a
    ValueError too, as the model's own checks were before the config made them."""

    exit_code = 2  # like a bad command-line option

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class ConfigFileError(ConfigError):
    """A --config file is missing, malformed, or has an unknown key or a value of the wrong type."""


class OutputDirError(VaelabError):
    """The output directory cannot be written, is full, or is in use by another run."""


class TrainingDivergedError(VaelabError):
    """The loss became NaN or infinite."""

    exit_code = 3


class Interrupted(VaelabError):
    """Ctrl-C: the run was checkpointed and can be resumed."""

    exit_code = 130


class SettingsError(VaelabError):
    """Settings that cannot work together (found once they are all known, after the arguments were parsed)."""

    exit_code = 2


class ReportError(VaelabError):
    """A study directory holds no runs to report on, or a path given to the report is wrong."""


class ArtifactError(VaelabError):
    """A run's saved frames or metrics cannot be read to draw its figures, or a drawing option is wrong."""
