"""Tiny deterministic songs, an env on them, and a module rollout for the algorithm tests."""

from __future__ import annotations

import numpy as np
import torch
from ray.rllib.core.columns import Columns

from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
from mixing_env.data.song import Song
from mixing_env.envs.mixing_env import MixingEnv

__all__ = ["OneTrackEnv", "deterministic_rollout", "one_track_song"]


def one_track_song(*, n_chunks: int = 16, seed: int = 0, name: str = "one_track") -> Song:
    """Three real tracks of different timbre whose reference mix is track 0 alone.

    The best action puts all gain on slot 0; any weight on the other two changes the mix's
    MFCC (a low hum and a high whistle against broadband noise).
    """
    rng = np.random.default_rng(seed)
    n = n_chunks * CHUNK_SIZE
    t = np.arange(n) / SAMPLE_RATE
    noise = 0.3 * rng.standard_normal(n)
    hum = 0.3 * np.sin(2 * np.pi * 110.0 * t)
    whistle = 0.3 * np.sin(2 * np.pi * 6000.0 * t)
    stems = np.stack([noise, hum, whistle]).astype(np.float32).reshape(3, n_chunks, CHUNK_SIZE)
    return Song(
        name=name,
        stems=stems,
        reference=stems[0].copy(),
        track_mask=np.ones(3, np.float32),
        slot_names=["Drums/Kick#1", "Strings/Bass#1", "Keys/Synth#1"],
        sample_rate=SAMPLE_RATE,
        n_valid_chunks=n_chunks,
    )


class OneTrackEnv(MixingEnv):
    """The real MixingEnv on :func:`one_track_song` only (RLlib builds it from env_config)."""

    def __init__(self, config: dict | None = None):
        super().__init__(config, songs=[one_track_song()])


def deterministic_rollout(module, env: MixingEnv, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """Runs one episode with the module's deterministic (mean) actions, carrying its state.

    Returns:
        The actions [shape=(steps, C)] and the mean reward per step.
    """
    obs, _ = env.reset(seed=seed)
    state = {k: torch.as_tensor(v)[None] for k, v in module.get_initial_state().items()}
    actions, rewards, done = [], [], False
    while not done:
        # RLlib's env-to-module pipeline hands a stateful module (B=1, T=1, ...) tensors.
        batch = {
            Columns.OBS: {k: torch.as_tensor(v)[None, None] for k, v in obs.items()},
            Columns.STATE_IN: state,
        }
        with torch.no_grad():
            out = module.forward_inference(batch)
        dist_cls = module.get_inference_action_dist_cls()
        action = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).to_deterministic()
        a = action.sample()[0, 0].numpy()
        state = out[Columns.STATE_OUT]
        obs, reward, done, _, _ = env.step(a)
        actions.append(a)
        rewards.append(reward)
    return np.stack(actions), float(np.mean(rewards))
