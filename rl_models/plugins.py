"""Classes named in experiment files by import path: a user's algorithm or module.

An experiment names a class the package does not ship as ``"package.module:ClassName"``
(importable where the command runs: installed, or in the working directory, which a console
script such as ``deepmixing`` does not search by itself) or as
``"path/to/file.py:ClassName"``. :func:`import_class` finds it in the driver;
:func:`shipped_paths` lists the files and folders Ray must copy to every process that
imports it (trial processes run in the trial's folder and, on a cluster, on other
machines), and :func:`class_path` writes the portable ``"module:ClassName"`` form that
those processes and checkpoints record.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from pathlib import Path

from mixing_env.errors import ConfigError

__all__ = ["absolute_class_path", "class_path", "import_class", "is_class_path",
           "portable_class_path", "shipped_paths"]


_PROJECT_PACKAGES = ("mixing_env", "rl_models", "benchmarks")
"""This project's packages: installed wherever it runs, never shipped."""


def is_class_path(name: object) -> bool:
    """Whether ``name`` names a class by import path (holds ``:``), not a registered name."""
    return isinstance(name, str) and ":" in name


def _split(spec: str, what: str) -> tuple[str, str]:
    target, _, attr = spec.rpartition(":")
    if not target or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ConfigError(f"{what} {spec!r}: expected 'package.module:ClassName' or "
                          "'path/to/file.py:ClassName'")
    return target, attr


def _is_file_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _module_name(target: str) -> tuple[str, Path | None]:
    """The importable module name of ``target`` and, for a file, the folder that holds it."""
    if not _is_file_path(target):
        return target, None
    path = Path(target).expanduser()
    if path.suffix != ".py":
        raise ConfigError(f"{target!r} is not a Python file (.py)")
    if not path.is_file():
        # In a trial process (another folder or machine) the file travelled with Ray's
        # runtime env and is importable by its stem.
        return path.stem, None
    return path.stem, path.resolve().parent


def _import(module_name: str, folder: Path | None):
    """Imports a module: a named file from its folder, else installed packages, then cwd."""
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # the file the user named, not a namesake
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        if folder is not None or e.name != top or str(Path.cwd()) in sys.path:
            raise
    # Not installed: the working directory, as `python -m` would find it (a console script
    # such as `deepmixing` does not put it on sys.path).
    sys.path.append(str(Path.cwd()))
    return importlib.import_module(module_name)


def import_class(spec: str, *, base: type, what: str) -> type:
    """Imports the class ``spec`` names and checks that it subclasses ``base``.

    Args:
        spec: ``"package.module:ClassName"`` or ``"path/to/file.py:ClassName"``.
        base: The class it must derive from (e.g. ``AlgorithmConfig``).
        what: What the class is for, in error messages (``"algorithm"``).

    Raises:
        ConfigError: The module cannot be imported, has no such class, or the class is not
            a ``base``; the message names ``spec``.
    """
    target, attr = _split(spec, what)
    module_name, folder = _module_name(target)
    try:
        module = _import(module_name, folder)
    except ImportError as e:
        raise ConfigError(f"{what} {spec!r}: cannot import {module_name!r} ({e}); the module "
                          "must be importable where the command runs (installed, or in the "
                          "working directory) or be given as a path to its .py file") from e
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"{what} {spec!r}: module {module_name!r} has no {attr!r}")
    if not isinstance(obj, type) or not issubclass(obj, base):
        raise ConfigError(f"{what} {spec!r} must be a subclass of {base.__module__}."
                          f"{base.__qualname__}, got {obj!r}")
    return obj


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class: the portable name checkpoints and trials record."""
    return f"{cls.__module__}:{cls.__qualname__}"


def portable_class_path(spec: str) -> str:
    """``spec`` with a file path replaced by its module name (``d/my_algos.py:X``: ``my_algos:X``).

    Trial processes run in their own folder (and, on a cluster, on other machines): they
    import the class by module name from what :func:`shipped_paths` sent along.
    """
    target, attr = spec.rpartition(":")[::2]
    if _is_file_path(target):
        return f"{Path(target).stem}:{attr}"
    return spec


def absolute_class_path(spec: str) -> str:
    """``spec`` with a relative file path made absolute (a module path stays as it is).

    Experiments are read where the command runs; trials and ``--resume`` run elsewhere.
    """
    target, attr = spec.rpartition(":")[::2]
    if _is_file_path(target) and Path(target).is_file():
        return f"{Path(target).expanduser().resolve()}:{attr}"
    return spec


def _installed(path: Path) -> bool:
    """Whether ``path`` lies in the interpreter's installed packages.

    Those are present on every node that runs the same image; the user's own folders are not.
    """
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    return any(path.is_relative_to(Path(r).resolve()) for r in roots if r)


def shipped_paths(specs: list[str]) -> list[str]:
    """The files or package folders that must travel with Ray for these class paths.

    For ``"pkg.mod:X"`` the top-level package ``pkg`` (its folder) or the single-file module;
    for ``"dir/file.py:X"`` the file. Installed packages are left out: every node has them.
    Each spec must have been imported by :func:`import_class` first.

    Returns:
        Absolute paths for Ray's ``runtime_env={"py_modules": [...]}``, without repeats.
    """
    out: list[str] = []
    for spec in specs:
        target = spec.rpartition(":")[0]
        top = _module_name(target)[0].split(".")[0]
        module = sys.modules.get(top)
        if module is None or getattr(module, "__file__", None) is None:
            continue
        locations = list(getattr(module, "__path__", [])) or [module.__file__]
        path = Path(locations[0]).resolve()
        if top not in _PROJECT_PACKAGES and not _installed(path) and str(path) not in out:
            out.append(str(path))
    return out
