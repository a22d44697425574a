"""Tiny deterministic fixtures for the model tests (no Ray cluster needed)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
import tree
from ray.rllib.core.columns import Columns

from rl_models.attention_lstm import AttentionLSTMModule

C, F, N_MFCC = 3, 16, 13
TINY = {
    "embed_dim": 5,
    "hidden_size": 8,
    "mix_hidden_size": 3,
    "attention_dim": 6,
    "max_seq_len": 8,
}


def spaces(c=C, f=F):
    obs = gym.spaces.Dict(
        {
            "chunks": gym.spaces.Box(-1.0, 1.0, (c, 1, f), np.float32),
            "mix_mfcc": gym.spaces.Box(-np.inf, np.inf, (N_MFCC,), np.float32),
            "track_mask": gym.spaces.Box(0.0, 1.0, (c,), np.float32),
        }
    )
    return obs, gym.spaces.Box(0.0, 1.0, (c,), np.float32)


def make_module(**overrides):
    obs, act = spaces()
    return AttentionLSTMModule(
        observation_space=obs, action_space=act, model_config={**TINY, **overrides}
    )


def make_batch(module, *, b=2, t=7, seed=0, mask=((1, 1, 0), (1, 1, 1))):
    g = torch.Generator().manual_seed(seed)
    obs = {
        "chunks": torch.randn(b, t, C, 1, F, generator=g) * 0.3,
        "mix_mfcc": torch.randn(b, t, N_MFCC, generator=g),
        "track_mask": torch.tensor(mask, dtype=torch.float32)[:b].unsqueeze(1).repeat(1, t, 1),
    }
    state = tree.map_structure(
        lambda s: torch.from_numpy(s).unsqueeze(0).repeat(b, *[1] * s.ndim),
        module.get_initial_state(),
    )
    return {Columns.OBS: obs, Columns.STATE_IN: state}


@pytest.fixture
def module():
    torch.manual_seed(0)
    return make_module()
