"""The song source: names, layout, peak and spaces from a config, without an env."""

import numpy as np
import pytest

from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.envs.song_source import SongSource
from mixing_env.errors import ConfigError

CONFIGS = {
    "raw": {},
    "logmel-levels": {"obs_features": "logmel", "n_track_features": 8, "level_features": True,
                      "stem_level_features": True, "obs_window": 2},
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS)
def test_spaces_and_layout_equal_the_envs(songs, config):
    source = SongSource(config, songs=songs)
    env = MixingEnv(config, songs=songs)
    observation_space, action_space = source.spaces()
    assert observation_space == env.observation_space and action_space == env.action_space
    assert source.layout.to_dict() == {"slot_names": list(songs[0].slot_names),
                                       "chunk_size": songs[0].chunk_size,
                                       "sample_rate": songs[0].sample_rate}
    peak = max(float(np.abs(s.stems).max()) for s in songs)
    assert source.peak == pytest.approx(peak)


def test_env_on_a_shared_source_plays_its_subset(songs):
    source = SongSource(songs=songs)
    env = MixingEnv({"songs": [songs[2].name]}, source=source)
    assert env.song_names == [songs[2].name] and env.source.load(songs[2].name) is songs[2]
    obs, info = env.reset(seed=0)
    assert info["song"] == songs[2].name and obs in env.observation_space
    with pytest.raises(ConfigError, match="not in the dataset"):
        source.subset(["nope"])
