"""Every algorithm the project names, end to end through the trial's own code.

For each: two iterations with the held-out evaluation on, the held-out score following the
learner's weights, a checkpoint whose plain files rebuild the policy (only the policy's
weights: no target network), and evaluation and mixing from that checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _trials import check_trial, experiment, record_demonstrations, train_two_iterations

from rl_models import checkpoints
from rl_models.app.train import DeepMixingTrainable

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def demonstrations(tmp_path_factory):
    """Oracle episodes of the training songs (BC, MARWIL)."""
    return record_demonstrations(tmp_path_factory.mktemp("demos") / "demos")


@pytest.mark.parametrize("algorithm", ["PPO", "APPO", "IMPALA", "PG", "BC", "MARWIL"])
def test_algorithm_trains_evaluates_and_checkpoints(ray_session, tmp_path, demonstrations,
                                                   algorithm):
    trainable, results = train_two_iterations(experiment(algorithm, demonstrations))
    try:
        check_trial(trainable, results, tmp_path)
    finally:
        trainable.stop()
    if algorithm == "APPO":  # its learner holds a target network: the checkpoint mixes too
        mix_a_song(tmp_path / "checkpoint_000002", tmp_path)


def mix_a_song(ckpt, tmp_path) -> None:
    """``deepmixing mix`` reads what the trial wrote."""
    import soundfile as sf

    from rl_models.app.mix import mix_song

    song = tmp_path / "MySong"
    song.mkdir()
    rng = np.random.default_rng(0)
    for name in ("01_Kick.wav", "06_Bass.wav"):
        sf.write(song / name, 0.2 * rng.standard_normal(22050), 44100)
    out = mix_song(ckpt, song, out_dir=tmp_path / "mix", target_lufs=-20.0, progress=False)
    wav, _ = sf.read(out["wav"])
    assert wav.shape[0] == 22050 and np.isfinite(wav).all() and np.abs(wav).max() > 0


def test_bc_then_ppo_starts_from_the_bc_policy(ray_session, tmp_path, demonstrations):
    bc, _ = train_two_iterations(experiment("BC", demonstrations))
    try:
        bc_ckpt = tmp_path / "bc" / "checkpoint_000001"
        bc_ckpt.mkdir(parents=True)
        bc.save_checkpoint(str(bc_ckpt))
    finally:
        bc.stop()
    bc_state = torch.load(bc_ckpt / checkpoints.WEIGHTS_FILE, weights_only=True)

    ppo = DeepMixingTrainable(config=experiment("PPO", init_module_from=str(tmp_path / "bc")))
    try:
        start = checkpoints.learner_policy(ppo.algo)["state"]
        for key, value in bc_state.items():
            torch.testing.assert_close(start[key], value)
        results = [ppo.train() for _ in range(2)]
        (tmp_path / "ppo").mkdir()
        check_trial(ppo, results, tmp_path / "ppo")
    finally:
        ppo.stop()
