"""``deepmixing mix`` with an agent that listens: its gains are those it plays in the env."""

from __future__ import annotations

import json

import numpy as np
from _mix_songs import SR

from mixing_env.data.audio_io import read_audio
from mixing_env.data.slots import build_song, place_stems
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.envs.song_source import SongSource
from rl_models import checkpoints
from rl_models.app.evaluate import play_songs
from rl_models.app.mix import find_stems, mix_song
from rl_models.app.module_policy import ModulePolicy
from rl_models.registry import DEFAULT_MODULE, module_spec

ENV = {"obs_features": "logmel", "n_track_features": 8, "level_features": True,
       "stem_level_features": True, "listening_features": True, "stem_loudness_feature": True}
MODEL = {"hidden_size": 8, "mix_hidden_size": 3, "attention_dim": 8, "embed_dim": 4,
         "max_seq_len": 8, "input_norm": "db", "cross_track_attention": True,
         "level_prior": 1.0, "level_prior_feature": -1}


def random_agent(folder):
    """A checkpoint of an untrained module whose env has the listening features."""
    import torch

    source = SongSource({**ENV, "generated": {"seed": 1, "seconds": 2.0, "n_tracks": [4, 5]}})
    observation_space, action_space = source.spaces()
    torch.manual_seed(5)
    spec = module_spec(DEFAULT_MODULE, dict(MODEL))
    spec.observation_space, spec.action_space = observation_space, action_space
    module = spec.build()
    layout = source.layout.to_dict()
    folder.mkdir()
    checkpoints.write_metadata(folder, experiment={"algorithm": "BC", "env": ENV,
                                                   "model": MODEL, "module": DEFAULT_MODULE},
                               layout=layout, iteration=0)
    checkpoints.write_policy_files(folder, state=module.state_dict(), module_name=DEFAULT_MODULE,
                                   model_config=module.model_config,
                                   observation_space=observation_space,
                                   action_space=action_space, layout=layout)
    return folder


def test_a_listening_agent_mixes_a_song_as_it_plays_it_in_the_env(mixed_song, tmp_path):
    agent = random_agent(tmp_path / "agent")
    out = tmp_path / "out"
    mix_song(agent, mixed_song, out_dir=out, full_automation=True, progress=False)
    meta = json.loads((out / f"{mixed_song.name}_automation.json").read_text())
    mixed = {t["track"]: np.array(t["gain"]) for t in meta["tracks"]}

    module, agent_meta = checkpoints.load_policy(agent)
    _, files = find_stems(mixed_song)
    placement = place_stems([p.stem for p in files], agent_meta["slot_names"], Taxonomy.load())
    audio = [read_audio(p, sample_rate=SR, mono=True)[0] for p in files]
    song = build_song("song", placement, audio, layout=agent_meta["slot_names"],
                      sample_rate=SR, chunk_size=500, stem_files=[str(p) for p in files])
    (record,) = play_songs(ModulePolicy(module), ENV, songs=[song])
    assert len(mixed) == len(placement.placed) == 8
    for i, row in placement.placed:
        played = record.gains[row]
        assert np.ptp(played) > 1e-3  # the agent's gains move: a wrong input would show
        # The JSON's 7 digits; the listening block's spectral columns agree to float32 rounding.
        np.testing.assert_allclose(mixed[files[i].stem], played, rtol=1e-4,
                                   err_msg=files[i].name)
