"""Errors that the command-line tools turn into one clear line and a non-zero exit."""


class PDRError(Exception):
    """Base class: a problem with the user's input (config, data, checkpoint), not a bug."""


class ConfigError(PDRError, ValueError):
    """A config file, key or value is wrong. The message names the file and the dotted key path."""


class RegistryError(PDRError, KeyError):
    """An unknown name was asked of a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(PDRError, ValueError):
    """Data on disk or a data setting does not match what was asked."""


class CheckpointError(PDRError, RuntimeError):
    """A checkpoint is missing, corrupt or belongs to another config."""
