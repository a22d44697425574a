"""Checks on folders a command will write, made before any long work starts."""

from __future__ import annotations

import os
from pathlib import Path

from mixing_env.errors import ConfigError, DeepMixingError

__all__ = ["check_output_folder"]


def check_output_folder(path: str | os.PathLike, *, what: str = "output folder",
                        error: type[DeepMixingError] = ConfigError) -> None:
    """Refuses a folder to write that is, or lies under, a file.

    Args:
        path: The folder (it need not exist yet).
        what: How the message names it, e.g. ``"--out folder"``.
        error: The exception class raised.

    Raises:
        DeepMixingError: Of class ``error``: ``path`` or a folder above it is a file.
    """
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise error(f"{what} {path} cannot be made: {folder} is a file")
            return
