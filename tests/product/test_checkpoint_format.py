"""The checkpoint format on its own: spaces as JSON, weights round trip, finding the newest."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from gymnasium import spaces

from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import CheckpointError
from rl_models import checkpoints
from rl_models.registry import DEFAULT_MODULE, module_spec

TINY = {"hidden_size": 4, "attention_dim": 4, "embed_dim": 4, "max_seq_len": 4}


def test_spaces_round_trip_through_plain_json():
    space = spaces.Dict({
        "chunks": spaces.Box(-np.inf, np.inf, (3, 1, 5), np.float32),
        "mask": spaces.Box(np.array([0, 0, 0]), np.array([1, 2, 3]), (3,), np.float32),
    })
    data = json.loads(json.dumps(checkpoints.space_to_json(space)))
    assert data["spaces"]["chunks"]["low"] == -np.inf  # uniform bounds stay one number
    assert checkpoints.space_from_json(data) == space
    with pytest.raises(CheckpointError, match="bad space type"):
        checkpoints.space_from_json({"type": "Tuple"})


@pytest.fixture
def written(tmp_path):
    env = MixingEnv({"synthetic": {"n_songs": 1, "seconds": 0.2, "n_tracks": 2, "seed": 0}})
    env.reset(seed=0)
    spec = module_spec(DEFAULT_MODULE, TINY)
    spec.observation_space, spec.action_space = env.observation_space, env.action_space
    torch.manual_seed(0)
    module = spec.build()
    layout = env.source.layout.to_dict()
    folders = []
    for i in range(2):
        ckpt = tmp_path / "exp" / "trial" / f"checkpoint_00000{i}"
        checkpoints.write_policy_files(
            ckpt, state=module.state_dict(), module_name=DEFAULT_MODULE,
            model_config=module.model_config, observation_space=env.observation_space,
            action_space=env.action_space, layout=layout)
        checkpoints.write_metadata(ckpt, experiment={"algorithm": "PPO"}, layout=layout,
                                   iteration=i)
        os.utime(ckpt, (1000 + i, 1000 + i))
        folders.append(ckpt)
    return module, folders, tmp_path / "exp"


def test_load_policy_rebuilds_the_same_module(written):
    module, folders, experiment = written
    loaded, meta = checkpoints.load_policy(experiment)
    assert meta["checkpoint"] == str(folders[-1].resolve()) and meta["iteration"] == 1
    assert type(loaded) is type(module)
    for (k, a), (k2, b) in zip(module.state_dict().items(), loaded.state_dict().items(),
                               strict=True):
        assert k == k2
        torch.testing.assert_close(a, b)
    assert not loaded.training  # eval mode


def test_list_checkpoints_is_oldest_first(written):
    _, folders, experiment = written
    assert checkpoints.list_checkpoints(experiment) == folders
    assert checkpoints.find_checkpoint(folders[0]) == folders[0]
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        checkpoints.list_checkpoints(experiment / "missing")


def test_a_weights_file_with_code_is_refused(written, tmp_path):
    _, folders, _ = written

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    torch.save({"x": Evil()}, folders[-1] / checkpoints.WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match=str(folders[-1] / checkpoints.WEIGHTS_FILE)):
        checkpoints.load_policy(folders[-1])
    assert not (tmp_path / "pwned").exists()
