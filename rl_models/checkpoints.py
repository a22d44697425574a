"""The DeepMixing checkpoint format: the one module that knows its folders and files.

A checkpoint is a folder (``checkpoint_000003/``) holding:

==============================  ==============================================================
file                            what it holds
==============================  ==============================================================
``deepmixing.json``             the experiment, the slot layout (slot names, chunk size,
                                sample rate) and the training iteration
``policy.json``                 the policy module: registered name, ``model_config``, the
                                observation and action spaces, the slot layout (plain JSON)
``policy_weights.pt``           the policy's weights: a torch state dict read with
                                ``torch.load(weights_only=True)``, so loading runs no code
``learner_group/...``           RLlib's own algorithm checkpoint (pickled), for resuming
                                training and for ``init_module_from``
==============================  ==============================================================

Evaluation and mixing read only the first three (:func:`load_policy`): a checkpoint from
elsewhere cannot run code on this machine through them. Behaviour cloning writes the same
files (:func:`write_policy_files`), with RLlib's module folder for PPO fine-tuning.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.errors import CheckpointError, ConfigError

__all__ = [
    "METADATA_FILE",
    "MODULE_SUBDIR",
    "POLICY_CONFIG_FILE",
    "PRETRAINED",
    "PRETRAINED_DIR",
    "WEIGHTS_FILE",
    "build_policy_module",
    "export_policy_files",
    "find_checkpoint",
    "learner_policy",
    "list_checkpoints",
    "load_policy",
    "load_rllib_module",
    "module_checkpoint_dir",
    "policy_state",
    "read_metadata",
    "resolve_checkpoint_path",
    "space_from_json",
    "space_to_json",
    "with_concentration_scale",
    "write_metadata",
    "write_policy_files",
]

METADATA_FILE = "deepmixing.json"
"""The experiment, the slot layout and the iteration of a checkpoint."""
POLICY_CONFIG_FILE = "policy.json"
"""Module name, model_config, spaces and slot layout: enough to rebuild the policy module."""
WEIGHTS_FILE = "policy_weights.pt"
"""The policy module's state dict (tensors only, read with ``weights_only=True``)."""
MODULE_SUBDIR = Path("learner_group", "learner", "rl_module", "default_policy")
"""Where an RLlib algorithm checkpoint keeps the policy module (single-agent default id)."""
_RLLIB_MODULE_FILES = ("module_state.pt", "module_state.pkl")
"""Files that mark an RLlib RLModule checkpoint folder."""
PRETRAINED = "pretrained"
"""The checkpoint name of the agent that ships with the package (:data:`PRETRAINED_DIR`)."""
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
"""The shipped agent's folder (made by ``deepmixing pretrained train``)."""


class _RLModuleConfigDeprecation(logging.Filter):
    """Drops the one RLlib warning that every RLModule checkpoint load prints.

    RLlib 2.60 writes its module checkpoints with ``config=RLModuleConfig`` and, reading them
    back, warns that this constructor argument is deprecated: nothing a user can act on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "`RLModule(config=[RLModuleConfig object])` has been deprecated" not in str(
            record.getMessage())


logging.getLogger("ray._common.deprecation").addFilter(_RLModuleConfigDeprecation())


# --------------------------------------------------------------------------------------------
# Finding checkpoints
# --------------------------------------------------------------------------------------------
def _is_checkpoint(path: Path) -> bool:
    return (path / METADATA_FILE).is_file() or (path / MODULE_SUBDIR).is_dir()


def resolve_checkpoint_path(path: str | Path) -> Path:
    """``path`` itself, or the shipped agent's folder for the name ``pretrained``.

    A folder literally named ``pretrained`` in the working directory wins: the name means the
    shipped agent only when no such path exists (write ``./pretrained`` for your own folder
    to make the intent plain either way).
    """
    path = Path(path).expanduser()
    if str(path) == PRETRAINED and not path.exists():
        return PRETRAINED_DIR
    return path


def list_checkpoints(path: str | Path) -> list[Path]:
    """The checkpoint folders under ``path``, oldest first (itself if it is one).

    ``path`` may be ``pretrained``, the shipped agent (:func:`resolve_checkpoint_path`).

    Raises:
        CheckpointError: ``path`` does not exist.
    """
    path = resolve_checkpoint_path(path)
    if not path.exists():
        hint = ("; remake the shipped agent with `deepmixing pretrained train --out "
                f"{PRETRAINED_DIR}`") if path == PRETRAINED_DIR else ""
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    if _is_checkpoint(path):
        return [path]
    return sorted((p for p in path.rglob("checkpoint_*") if p.is_dir() and _is_checkpoint(p)),
                  key=lambda p: (p.stat().st_mtime, p.name))


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder under ``path``: itself, a trial's or an experiment's newest.

    Raises:
        CheckpointError: Nothing that looks like a checkpoint lies there.
    """
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(
            f"no checkpoint under {Path(path).expanduser()}; expected a folder holding "
            f"{METADATA_FILE} (a checkpoint_XXXXXX folder, a trial folder, or an experiment "
            f"folder)"
        )
    return found[-1]


def module_checkpoint_dir(path: str | Path) -> Path:
    """RLlib's RLModule folder for ``path`` (used by ``init_module_from``).

    ``path`` may be an RLModule checkpoint itself, an algorithm checkpoint, or a trial or
    experiment folder (its newest checkpoint).

    Raises:
        CheckpointError: ``path`` holds neither.
    """
    root = Path(path).expanduser()
    if any((root / name).is_file() for name in _RLLIB_MODULE_FILES):
        return root.resolve()
    module_dir = find_checkpoint(root) / MODULE_SUBDIR
    if not module_dir.is_dir():
        raise CheckpointError(f"{module_dir.parent.parent.parent.parent} has no RLlib module "
                              f"folder {MODULE_SUBDIR}")
    return module_dir.resolve()


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}; was it written by "
                              f"deepmixing train?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is damaged"
                              ) from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_metadata(checkpoint: str | Path) -> dict:
    """``deepmixing.json`` of a checkpoint folder.

    Raises:
        CheckpointError: The file is missing or not a JSON object (naming it).
    """
    return _read_json(Path(checkpoint) / METADATA_FILE)


def write_metadata(checkpoint: str | Path, *, experiment: Mapping, layout: Mapping,
                   iteration: int) -> Path:
    """Writes ``deepmixing.json`` (experiment, slot layout, iteration) into a checkpoint."""
    path = Path(checkpoint) / METADATA_FILE
    meta = {"experiment": dict(experiment), **dict(layout), "iteration": int(iteration)}
    path.write_text(json.dumps(meta, indent=2, default=str))
    return path


# --------------------------------------------------------------------------------------------
# Spaces as plain JSON (RLlib's own space serializer reads arrays with allow_pickle=True)
# --------------------------------------------------------------------------------------------
def _bound_to_json(values: np.ndarray) -> Any:
    flat = np.unique(values)
    if flat.size == 1:
        return float(flat[0])
    return values.astype(np.float64).tolist()


def space_to_json(space: Any) -> dict:
    """A Box or Dict-of-Box space as JSON data (bounds as a number when uniform)."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _bound_to_json(space.low), "high": _bound_to_json(space.high)}
    raise CheckpointError(f"cannot record a {type(space).__name__} space in {POLICY_CONFIG_FILE}")


def space_from_json(data: Mapping) -> Any:
    """The space :func:`space_to_json` wrote.

    Raises:
        CheckpointError: The data is not such a space.
    """
    from gymnasium import spaces

    try:
        if data["type"] == "Dict":
            return spaces.Dict({k: space_from_json(v) for k, v in data["spaces"].items()})
        if data["type"] == "Box":
            shape = tuple(int(n) for n in data["shape"])
            dtype = np.dtype(str(data["dtype"]))
            low, high = (np.broadcast_to(np.asarray(data[k], np.float64), shape).astype(dtype)
                         for k in ("low", "high"))
            return spaces.Box(low, high, shape, dtype)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"bad space in {POLICY_CONFIG_FILE}: {e!r}") from e
    raise CheckpointError(f"bad space type {data.get('type')!r} in {POLICY_CONFIG_FILE}")


# --------------------------------------------------------------------------------------------
# Writing and reading the policy
# --------------------------------------------------------------------------------------------
def write_policy_files(checkpoint: str | Path, *, state: Mapping[str, Any], module_name: str,
                       model_config: Mapping, observation_space: Any, action_space: Any,
                       layout: Mapping) -> tuple[Path, Path]:
    """Writes ``policy.json`` and ``policy_weights.pt`` into a checkpoint folder.

    Args:
        checkpoint: The checkpoint folder (created if missing).
        state: The module's state dict (tensors or arrays by parameter name).
        module_name: The registered module name (:data:`rl_models.registry.MODULES`) or the
            class path ``"package.module:ModuleClass"`` of a user's module.
        model_config: The module's full ``model_config``.
        observation_space: The module's observation space.
        action_space: The module's action space.
        layout: ``SongSource.layout.to_dict()`` of the training songs.

    Returns:
        The two written paths.
    """
    import torch

    folder = Path(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    # RLlib's learner state turns 0-d parameters into Python floats: back to torch's default.
    tensors = {k: torch.tensor(v, dtype=torch.get_default_dtype()) if isinstance(v, float)
               else torch.as_tensor(np.asarray(v)).clone() for k, v in state.items()}
    weights = folder / WEIGHTS_FILE
    torch.save(tensors, weights)
    config = {"module": module_name, "model_config": dict(model_config),
              "observation_space": space_to_json(observation_space),
              "action_space": space_to_json(action_space), "layout": dict(layout)}
    policy = folder / POLICY_CONFIG_FILE
    policy.write_text(json.dumps(config, indent=2, default=_json_default))
    return policy, weights


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def policy_state(module: Any) -> dict[str, Any]:
    """A module's state dict without its target networks: only the policy's own weights.

    APPO's learner adds target copies of the policy (``TargetNetworkAPI``) that a module
    built from ``policy.json`` does not have; they are never exported.
    """
    prefixes = []
    if hasattr(module, "get_target_network_pairs") and callable(module.get_target_network_pairs):
        try:
            targets = [target for _, target in module.get_target_network_pairs()]
        except AttributeError:  # the learner never made them (no target-network algorithm)
            targets = []
        prefixes = [f"{name}." for name, sub in module.named_modules()
                    if name and any(sub is t for t in targets)]
    # A copy: on CPU, .cpu() is the live tensor, which the learner goes on updating.
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()
            if not k.startswith(tuple(prefixes))}


def learner_policy(algorithm: Any) -> dict[str, Any]:
    """The policy as the learner holds it now, in the form :func:`write_policy_files` takes.

    Works with a local learner and with remote ones (a cluster's GPU learner): the weights
    come from the learner, which env runners and evaluation modules only receive copies of.

    Returns:
        ``{"state", "module_name", "model_config", "observation_space", "action_space"}``.
    """
    from ray.rllib.core import DEFAULT_MODULE_ID

    results = algorithm.learner_group.foreach_learner(_learner_snapshot,
                                                      module_id=DEFAULT_MODULE_ID)
    first = next(iter(results))
    if not first.ok:
        raise first.get()
    return first.get()


def _learner_snapshot(learner: Any, module_id: str) -> dict[str, Any]:
    from rl_models.registry import module_name_of

    module = learner.module[module_id].unwrapped()
    return {"state": policy_state(module), "module_name": module_name_of(module),
            "model_config": dict(module.model_config), "observation_space":
            module.observation_space, "action_space": module.action_space}


def build_policy_module(module_name: str, model_config: Mapping, observation_space: Any,
                        action_space: Any) -> Any:
    """A fresh policy module (random weights) as ``policy.json`` describes it.

    Raises:
        ConfigError: Unknown module or invalid model_config.
    """
    from rl_models.registry import module_spec

    spec = module_spec(str(module_name), dict(model_config))
    spec.observation_space, spec.action_space = observation_space, action_space
    return spec.build()


def _build_module(checkpoint: Path) -> Any:
    import torch

    from rl_models.plugins import is_class_path, portable_class_path

    config = _read_json(checkpoint / POLICY_CONFIG_FILE)
    weights = checkpoint / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{checkpoint} has no {WEIGHTS_FILE}")
    try:
        name = str(config["module"])
        if is_class_path(name) and portable_class_path(name) != name:
            # A module is imported from the user's environment, never from a file a
            # checkpoint points at.
            raise CheckpointError(f"{checkpoint / POLICY_CONFIG_FILE} names the module by "
                                  f"file path {name!r}; expected 'package.module:Class'")
        module = build_policy_module(name, config["model_config"],
                                     space_from_json(config["observation_space"]),
                                     space_from_json(config["action_space"]))
    except KeyError as e:
        raise CheckpointError(f"{checkpoint / POLICY_CONFIG_FILE} lacks the key {e}") from e
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint / POLICY_CONFIG_FILE}: {e}") from e
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"cannot read the policy weights {weights}: the file is damaged "
                              f"or not a weights file ({type(e).__name__}: {first})") from e
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"the weights in {weights} do not fit the module of "
                              f"{POLICY_CONFIG_FILE}: {first}") from e
    module.eval()
    return module


def load_policy(path: str | Path) -> tuple[Any, dict]:
    """Builds the policy module of a checkpoint from its plain files, unpickling nothing.

    Args:
        path: A checkpoint folder, or a trial or experiment folder (its newest checkpoint).

    Returns:
        ``(module, meta)``; ``meta`` is ``deepmixing.json`` (``experiment``, ``slot_names``,
        ``chunk_size``, ``sample_rate``) plus ``checkpoint``, the folder read.

    Raises:
        CheckpointError: No checkpoint, a checkpoint written before the plain weights file
            existed (use :func:`export_policy_files` on one you trust), or a damaged file
            (named, with the older checkpoints of the folder when there are any).
    """
    found = list_checkpoints(path)
    if not found:
        find_checkpoint(path)  # raises the "no checkpoint" error
    ckpt = found[-1].resolve()
    try:
        if not (ckpt / WEIGHTS_FILE).is_file() and not (ckpt / POLICY_CONFIG_FILE).is_file():
            raise CheckpointError(
                f"{ckpt} has no {WEIGHTS_FILE} (written before weights were stored without "
                f"pickle); if you trust it, convert it with `deepmixing export-weights {ckpt}`")
        meta = read_metadata(ckpt)
        module = _build_module(ckpt)
    except CheckpointError as e:
        older = [str(p) for p in found[:-1]]
        if older:
            raise CheckpointError(f"{e}; older checkpoint(s) in {path}: {', '.join(older[-3:])}"
                                  ) from e
        raise
    meta["checkpoint"] = str(ckpt)
    return module, meta


def load_rllib_module(path: str | Path) -> Any:
    """RLlib's pickled module of a checkpoint (for training only: it unpickles).

    Raises:
        CheckpointError: No module folder, or RLlib cannot load it (naming the folder).
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = module_checkpoint_dir(path)
    try:
        module = RLModule.from_checkpoint(str(module_dir))
    except Exception as e:  # RLlib raises many kinds; the user needs the path
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot load RLlib's module checkpoint {module_dir} (class_and_ctor_args.pkl or "
            f"{_RLLIB_MODULE_FILES[0]} damaged?): {type(e).__name__}: {first}") from e
    if type(module) is RLModule:
        # RLlib falls back to the bare base class when the constructor file is unreadable;
        # training would then fail later with an AttributeError.
        raise CheckpointError(f"{module_dir / 'class_and_ctor_args.pkl'} is damaged: RLlib "
                              f"cannot restore the module class from it")
    return module


def with_concentration_scale(path: str | Path, scale: float, out_dir: str | Path) -> Path:
    """RLlib's module of a checkpoint with its Dirichlet concentration scale set, saved anew.

    For fine-tuning that starts with less (or more) exploration noise than the policy it
    starts from: the Dirichlet's mean is unchanged, its spread shrinks as 1 / sqrt(scale).
    The result is an RLModule folder ``init_module_from`` takes.

    Raises:
        ConfigError: ``scale`` not a positive finite number, or a module without one.
        CheckpointError: As :func:`load_rllib_module`.
    """
    import torch

    if isinstance(scale, bool) or not isinstance(scale, int | float) or not (
            math.isfinite(scale) and scale > 0):
        raise ConfigError(f"concentration scale must be a positive number, got {scale!r}")
    module = load_rllib_module(path)
    # A parameter where the scale is learned, a buffer where it is fixed.
    log_kappa = {**dict(module.named_parameters()), **dict(module.named_buffers())}.get(
        "_core.log_kappa")
    if log_kappa is None:
        raise ConfigError(f"the module of {path} has no concentration scale (_core.log_kappa)")
    with torch.no_grad():
        log_kappa.fill_(math.log(scale))
    out = Path(out_dir)
    module.save_to_path(str(out))
    return out


def export_policy_files(path: str | Path) -> tuple[Path, Path]:
    """Writes ``policy.json`` and ``policy_weights.pt`` for an older, trusted checkpoint.

    This unpickles RLlib's module checkpoint: only run it on checkpoints you trust.

    Raises:
        CheckpointError: No checkpoint, or RLlib cannot load its module.
    """
    from rl_models.registry import module_name_of

    ckpt = find_checkpoint(path).resolve()
    meta = read_metadata(ckpt)
    module = load_rllib_module(ckpt)
    layout = {k: meta[k] for k in ("slot_names", "chunk_size", "sample_rate") if k in meta}
    return write_policy_files(
        ckpt, state=policy_state(module), module_name=module_name_of(module),
        model_config=module.model_config, observation_space=module.observation_space,
        action_space=module.action_space, layout=layout)
