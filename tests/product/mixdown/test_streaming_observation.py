"""Mixing a song window by window shows the agent exactly what the env shows it in training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from mixing_env.data.audio_io import read_audio
from mixing_env.data.slots import build_song, default_layout, place_stems
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.engineer.listening import LISTENING_FEATURES
from mixing_env.envs.config import EnvConfig
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.envs.song_features import SongPrecompute
from mixing_env.episodes import run_episode
from rl_models.app.mixdown.agent import play_streaming
from rl_models.app.mixdown.observation import (
    StreamingObservation,
    WholeStemStatistics,
    check_supported,
)
from rl_models.app.mixdown.stems import check_stems, env_windows
from rl_models.checkpoints import PRETRAINED_DIR

SR, CHUNK = 44100, 500
PRETRAINED_ENV = json.loads((PRETRAINED_DIR / "deepmixing.json").read_text())["experiment"]["env"]
CONFIGS = {
    "pretrained": PRETRAINED_ENV,
    "raw": {},
    "every-part": {"obs_features": "logmel", "n_track_features": 12, "level_features": True,
                   "stem_level_features": True, "stem_spectrum_features": True,
                   "listening_features": True, "stem_loudness_feature": True,
                   "obs_window": 3},
    "listening": {"obs_features": "logmel", "n_track_features": 8, "listening_features": True,
                  "stem_loudness_feature": True, "obs_window": 4},
}


TOLERANCE_DB = 1e-4
"""How far the listening columns measured from the long-term spectrum may be from the env's."""


def spectral_columns(config: EnvConfig) -> np.ndarray:
    """The observation's columns from the listening block's long-term spectrum."""
    if not config.listening_features:
        return np.zeros(0, np.int64)
    start = (config.n_track_features + 4 * config.level_features
             + 2 * config.stem_level_features
             + config.n_track_features * config.stem_spectrum_features)
    names = ("centroid", "low_share", "masked", "lead_range", "lead_masked")
    return start + np.array([LISTENING_FEATURES.index(k) for k in names])


def write_stems(folder, seconds: float, rng) -> list:
    """Kick-like bursts, a tone that rests, a stereo pad that starts late, a lead that sings
    phrases (and a silent stem)."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    kick = rng.standard_normal(n) * (np.sin(2 * np.pi * 2 * t) > 0.95) * 0.8
    tone = 0.05 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.3)
    pad = 0.3 * rng.standard_normal((n, 2)) * (t > seconds / 3)[:, None]
    lead = 0.2 * np.sin(2 * np.pi * 440 * t) * (t % 0.4 < 0.25) * np.minimum(t * 3, 1)
    files = {"01_Kick.wav": kick, "06_Bass.wav": tone, "15_Strings.wav": pad,
             "18_BackingVox1.wav": np.zeros(n), "20_LeadVox.wav": lead}
    paths = []
    for name, y in files.items():
        sf.write(folder / name, y.astype(np.float32), SR, subtype="FLOAT")
        paths.append(folder / name)
    return paths


def env_episode(paths, config: dict, actions: np.ndarray):
    """The env's observations and gains for the song, with scripted actions."""
    layout = default_layout()
    placement = place_stems([p.stem for p in paths], layout, Taxonomy.load())
    audio = [read_audio(p, sample_rate=SR, mono=True)[0] for p in paths]
    song = build_song("song", placement, audio, layout=layout, sample_rate=SR,
                      chunk_size=CHUNK, stem_files=[str(p) for p in paths])
    env = MixingEnv(config, songs=[song])

    class Scripted:
        name = "scripted"

        def reset(self, song, start):
            self.t = 0

        def act(self, obs):
            self.t += 1
            return actions[self.t - 1]

    record = run_episode(env, Scripted(), song="song", start=0, keep_observations=True)
    return record, placement


@pytest.mark.parametrize("seconds", [1.3, 0.3], ids=["gated-loudness", "shorter-than-a-block"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_streamed_observations_equal_the_envs(tmp_path, name, seconds):
    rng = np.random.default_rng(11)
    paths = write_stems(tmp_path, seconds, rng)
    stems, _ = check_stems(paths)
    config = EnvConfig.from_dict(CONFIGS[name])
    n_chunks = int(np.ceil(seconds * SR / CHUNK))
    actions = rng.dirichlet(np.ones(len(default_layout())), size=n_chunks).astype(np.float32)
    record, placement = env_episode(paths, config.to_dict(), actions)
    assert [i for i, _ in placement.placed] == list(range(len(paths)))
    rows = [row for _, row in placement.placed]

    pre = SongPrecompute(config, n_slots=len(default_layout()), chunk_size=CHUNK,
                         sample_rate=SR)

    def windows():  # 7 chunks a window: many window edges in a short song
        return env_windows(stems, sample_rate=SR, chunk_size=CHUNK, n_chunks=n_chunks,
                           window_chunks=7)

    whole = WholeStemStatistics(config, n_tracks=len(stems), n_chunks=n_chunks,
                                sample_rate=SR, chunk_size=CHUNK, logmel=pre.logmel,
                                rows=rows, slots=placement.slots, files=[str(p) for p in paths])
    for window in windows():
        whole.add(window)
    assert whole.sounding.tolist() == [True, True, True, False, True]
    observation = StreamingObservation(config, pre, whole, n_tracks=len(stems))

    class Recorder:
        def reset(self):
            self.seen = []

        def act(self, obs):
            self.seen.append({k: np.array(v) for k, v in obs.items()})
            return actions[len(self.seen) - 1]

    recorder = Recorder()
    gains = play_streaming(recorder, observation, windows(), rows=rows,
                           n_slots=len(default_layout()), n_chunks=n_chunks)
    assert len(recorder.seen) == record.n_steps == n_chunks
    spectral = spectral_columns(config)
    exact = np.setdiff1d(np.arange(record.observations[0]["chunks"].shape[-1]), spectral)
    for t, (mine, env_obs) in enumerate(zip(recorder.seen, record.observations, strict=False)):
        for key in ("mix_mfcc", "track_mask"):  # bit for bit
            np.testing.assert_array_equal(mine[key], env_obs[key], err_msg=f"step {t}, {key}")
        np.testing.assert_array_equal(mine["chunks"][..., exact], env_obs["chunks"][..., exact],
                                      err_msg=f"step {t}, chunks")
        # To float32 rounding: the env sums the spectrum's frames in float32.
        np.testing.assert_allclose(mine["chunks"][..., spectral],
                                   env_obs["chunks"][..., spectral], rtol=0, atol=TOLERANCE_DB,
                                   err_msg=f"step {t}, listening")
    np.testing.assert_array_equal(gains, record.gains[rows].astype(np.float32))


def test_an_observation_part_mix_cannot_stream_is_refused():
    import dataclasses

    extended = dataclasses.make_dataclass("Extended", [("stem_tempo_features", bool, True)],
                                          bases=(EnvConfig,), frozen=True)
    with pytest.raises(Exception, match="stem_tempo_features"):
        check_supported(extended(obs_features="logmel"))
