"""The DeepMixing environment and its registration with Gymnasium and Ray Tune.

``gymnasium.make("DeepMixing-v0", config={...})`` works once :mod:`mixing_env` is imported.
For RLlib call :func:`register_with_ray` (in the driver, before building the algorithm) and
use ``config.environment("deepmixing", env_config={...})``.
"""

from __future__ import annotations

from typing import Any

import gymnasium

__all__ = ["ENV_ID", "RAY_ENV_NAME", "EnvConfig", "MixingEnv", "make_env", "register_with_ray"]

ENV_ID = "DeepMixing-v0"
"""Gymnasium id of :class:`MixingEnv`."""

RAY_ENV_NAME = "deepmixing"
"""Name of :class:`MixingEnv` in Ray Tune's registry (see :func:`register_with_ray`)."""

if ENV_ID not in gymnasium.registry:
    # Episodes end by termination at the song's (or window's) end; no time limit of our own.
    gymnasium.register(
        id=ENV_ID,
        entry_point="mixing_env.envs.mixing_env:MixingEnv",
        max_episode_steps=None,
        disable_env_checker=False,
    )


def make_env(config: dict | None = None) -> Any:
    """Build a :class:`MixingEnv` from a config dict (RLlib's ``EnvContext`` works too)."""
    from mixing_env.envs.mixing_env import MixingEnv

    return MixingEnv(config)


def register_with_ray(name: str = RAY_ENV_NAME) -> str:
    """Register :class:`MixingEnv` with Ray Tune's registry under ``name``.

    Returns:
        The registered name, for ``AlgorithmConfig.environment(name, env_config=...)``.
    """
    try:
        from ray.tune.registry import register_env
    except ImportError as e:
        raise ImportError(
            "register_with_ray needs ray[rllib,tune]: pip install 'ray[rllib,tune]'"
        ) from e
    register_env(name, make_env)
    return name


def __getattr__(name: str) -> Any:
    # Lazy so `import mixing_env` does not import librosa.
    if name == "MixingEnv":
        from mixing_env.envs.mixing_env import MixingEnv

        return MixingEnv
    if name == "EnvConfig":
        from mixing_env.envs.config import EnvConfig

        return EnvConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
