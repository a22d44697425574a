"""Every module an experiment can name trains, evaluates on held-out songs and checkpoints.

The report's attention-LSTM runs under every algorithm in ``test_every_algorithm.py``; here
RLlib's default model over the Dict observation (``rllib_default``, with its LSTM and with
APPO's target networks) and a user's module named by file (the documented example).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _trials import check_trial, experiment, train_two_iterations

from mixing_env.errors import CheckpointError
from rl_models import checkpoints

pytestmark = pytest.mark.ray

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RLLIB_LSTM = {"use_lstm": True, "lstm_cell_size": 8, "fcnet_hiddens": [8],
              "head_fcnet_hiddens": [8], "max_seq_len": 4}


@pytest.mark.parametrize(("algorithm", "module", "model"), [
    ("PPO", "rllib_default", RLLIB_LSTM),
    ("APPO", "rllib_default", {"fcnet_hiddens": [8]}),
    (f"{EXAMPLES}/my_algos.py:EqualGainsPPOConfig", f"{EXAMPLES}/tiny_module.py:TinyMixerModule",
     {"hidden": 8, "max_seq_len": 4}),
], ids=["rllib-lstm-ppo", "rllib-mlp-appo", "example-module-and-algorithm"])
def test_module_trains_evaluates_and_checkpoints(ray_session, tmp_path, algorithm, module,
                                                 model):
    trainable, results = train_two_iterations(experiment(algorithm, module=module, model=model))
    try:
        ckpt = check_trial(trainable, results, tmp_path)
    finally:
        trainable.stop()
    # A user's module is recorded by module path (imported where evaluate runs), never by
    # the file path of the experiment.
    recorded = json.loads((ckpt / checkpoints.POLICY_CONFIG_FILE).read_text())["module"]
    assert recorded == (module if ":" not in module else "tiny_module:TinyMixerModule")
    if algorithm.endswith("EqualGainsPPOConfig"):
        learner = results[-1]["learners"]["default_policy"]
        assert learner["equal_gains_penalty"] >= 0.0  # the example's extra loss term ran


def test_export_weights_knows_rllib_default(ray_session, tmp_path):
    """An older checkpoint without the plain files gets them from RLlib's module folder."""
    trainable, results = train_two_iterations(
        experiment("PPO", module="rllib_default", model=RLLIB_LSTM))
    try:
        ckpt = tmp_path / "checkpoint_000001"
        ckpt.mkdir()
        trainable.save_checkpoint(str(ckpt))
    finally:
        trainable.stop()
    written = checkpoints.load_policy(ckpt)[0].state_dict()
    for name in (checkpoints.WEIGHTS_FILE, checkpoints.POLICY_CONFIG_FILE):
        (ckpt / name).unlink()
    with pytest.raises(CheckpointError, match="export-weights"):
        checkpoints.load_policy(ckpt)
    checkpoints.export_policy_files(ckpt)
    module, _ = checkpoints.load_policy(ckpt)
    assert set(module.state_dict()) == set(written)
