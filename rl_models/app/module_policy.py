"""The trained RLModule behind the :class:`~mixing_env.episodes.Policy` protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mixing_env.data.song import Song

__all__ = ["ModulePolicy"]


class ModulePolicy:
    """Drives an RLlib RLModule, one chunk a step: the distribution's mean, or a draw from it.

    The observation gets a batch axis, and a time axis when the module is stateful (as RLlib's
    env-to-module connectors do at inference); the state is carried from step to step and
    starts afresh at every :meth:`reset`.

    Args:
        module: The RLModule (e.g. from a checkpoint).
        name: Row label in tables.
        explore: Draw each action from the module's training distribution (as PPO samples)
            instead of taking its mean (how the agent mixes and is scored).
    """

    def __init__(self, module: Any, name: str = "agent", *, explore: bool = False):
        self.module = module
        self.name = name
        self.explore = explore
        self.state = None

    def reset(self, song: Song | None = None, start: int = 0) -> None:
        """Starts a new episode: the module's initial state (the song is not needed)."""
        import torch
        import tree

        self.state = None
        if self.module.is_stateful():
            self.state = tree.map_structure(
                lambda s: torch.as_tensor(np.asarray(s))[None], self.module.get_initial_state()
            )

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The module's action for one observation, float32 [shape=(C,)]."""
        import torch
        import tree
        from ray.rllib.core.columns import Columns

        stateful = self.module.is_stateful()
        if stateful and self.state is None:
            self.reset()
        expand = (lambda x: torch.tensor(np.asarray(x))[None, None]) if stateful else (
            lambda x: torch.tensor(np.asarray(x))[None])
        batch = {Columns.OBS: tree.map_structure(expand, dict(obs))}
        if stateful:
            batch[Columns.STATE_IN] = self.state
        with torch.no_grad():
            out = self.module.forward_inference(batch)
        if stateful:
            self.state = out[Columns.STATE_OUT]
        inputs = out[Columns.ACTION_DIST_INPUTS]
        if self.explore:
            dist = self.module.get_train_action_dist_cls().from_logits(inputs)
        else:
            dist = self.module.get_inference_action_dist_cls().from_logits(inputs)
            dist = dist.to_deterministic()
        action = dist.sample().detach().cpu().numpy()
        return np.asarray(action, dtype=np.float32).reshape(-1)
