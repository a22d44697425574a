"""The throughput benchmark measures both modules round by round, side by side."""

import numpy as np
import pytest

from benchmarks.bench_throughput import measure_rllib, ratios

TINY_SONGS = {"synthetic": {"n_songs": 1, "seconds": 1.0, "n_tracks": [3, 4], "seed": 0},
              "episode_chunks": 16, "obs_features": "logmel", "n_track_features": 4,
              "stem_loudness_feature": True}


@pytest.mark.usefixtures("ray_session")
def test_both_modules_take_turns_and_the_ratios_follow_from_the_rates():
    small = {"embed_dim": 4, "hidden_size": 6, "mix_hidden_size": 3, "attention_dim": 5,
             "input_norm": "db", "log_rms_feature": False, "max_seq_len": 4,
             "level_prior": 1.0, "level_prior_feature": -1}
    res = measure_rllib({"attention": (None, small),
                         "default": ("rllib_default", {"use_lstm": True, "max_seq_len": 4,
                                                       "lstm_cell_size": 8})},
                        iterations=2, warmup=0, batch=32, envs=2, minibatch=32, gamma=0.0,
                        n_songs=1, env=TINY_SONGS)
    for run in ("attention", "default"):
        r = res[run]
        assert len(r["rounds"]) == 2 and r["env_steps"] == 64
        assert r["env_steps_per_s"] == pytest.approx(64 / r["wall_s"])
        assert r["learner_s_per_batch"] == pytest.approx(
            32 / r["env_steps_per_s"] - 32 / r["sampling_alone_env_steps_per_s"])
    out = ratios(res)
    assert out["attention_vs_default_lstm"] == pytest.approx(
        res["attention"]["env_steps_per_s"] / res["default"]["env_steps_per_s"])
    assert out["attention_vs_default_lstm_median_round"] == pytest.approx(float(np.median(
        np.array(res["attention"]["rounds"]) / np.array(res["default"]["rounds"]))))
