"""The project's exception tree: one root, a few subclasses named for what went wrong."""

__all__ = [
    "DeepMixingError",
    "AudioFileError",
    "DatasetError",
    "CacheError",
    "ConfigError",
    "ActionError",
    "CheckpointError",
]


class DeepMixingError(Exception):
    """Root of every error this project raises on purpose."""


class AudioFileError(DeepMixingError):
    """An audio file is missing, unreadable, corrupt, or holds NaN/inf samples."""


class DatasetError(DeepMixingError):
    """A dataset folder is empty, has no mix, or does not match any known layout."""


class CacheError(DeepMixingError):
    """A prepared cache is missing, incomplete, or of another format version."""


class ConfigError(DeepMixingError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class ActionError(DeepMixingError, ValueError):
    """An action handed to the environment has the wrong shape or non-finite values."""


class CheckpointError(DeepMixingError):
    """A checkpoint is missing or does not fit the requested model or dataset."""
