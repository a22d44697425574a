"""The learning benchmark's pieces on tiny data: split, demonstrations, BC reading them, scoring."""

import dataclasses
import math

import numpy as np
import pytest

from benchmarks.quality import (
    QualitySetup,
    agent_experiments,
    make_split,
    record_oracle_demonstrations,
    score_policies,
)
from mixing_env.baselines import OraclePolicy
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.errors import ConfigError
from rl_models.app.demonstrations import read_demonstrations

TINY = QualitySetup(n_train=3, n_heldout=2, seconds=1.0, n_tracks=(4, 5), episode_chunks=16,
                    demo_episodes_per_song=2, agents=("bc", "bc_ppo", "ppo"))
"""The default kind of songs (sampled instruments), tiny."""


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("quality"), TINY)


def test_split_is_disjoint_and_shares_the_slot_layout(split):
    assert len(split.train) == 3 and len(split.heldout) == 2
    assert all(n.startswith("SampledSong") for n in split.train + split.heldout)
    assert not set(split.train) & set(split.heldout)
    train_env = MixingEnv(split.env(TINY))
    heldout_env = MixingEnv(split.env(TINY, heldout=True))
    assert train_env.song_names == list(split.train)
    assert heldout_env.song_names == list(split.heldout)
    assert train_env.observation_space["chunks"].shape == heldout_env.observation_space[
        "chunks"].shape
    train_env.reset(seed=0)
    heldout_env.reset(seed=0)
    assert train_env.song.slot_names == heldout_env.song.slot_names
    assert heldout_env.config.episode_chunks is None  # held-out songs are scored whole


def test_demonstrations_hold_oracle_actions(split, tmp_path):
    path = record_oracle_demonstrations(split, TINY, tmp_path / "demos")
    episodes = read_demonstrations(path)
    assert len(episodes) == len(split.train) * TINY.demo_episodes_per_song
    env = MixingEnv(split.env(TINY))
    ep = episodes[0]
    assert ep.is_done and len(ep) == TINY.episode_chunks
    actions = np.asarray(ep.get_actions())
    np.testing.assert_allclose(actions.sum(axis=1), 1.0, rtol=1e-5)
    # Each action is the oracle's gain vector of some window of a training song.
    oracle = {n: OraclePolicy().gains(env.source.load(n)) for n in split.train}
    assert any(
        np.allclose(actions, g[:, s : s + len(actions)].T, atol=1e-6)
        for g in oracle.values()
        for s in range(g.shape[1] - len(actions) + 1)
    )


@pytest.mark.ray
def test_bc_reads_the_demonstrations(split, tmp_path, ray_session):
    from rl_models.algorithms import build_algorithm_config

    path = record_oracle_demonstrations(split, TINY, tmp_path / "demos")
    model = {**TINY.model, "hidden_size": 8, "attention_dim": 8, "embed_dim": 4, "max_seq_len": 8}
    config = build_algorithm_config(
        "BC", env_config=split.env(TINY), model=model, offline_data={"input_": str(path)},
        training={"train_batch_size_per_learner": 64, "lr": 1e-3}, seed=0,
    )
    algo = config.build_algo()
    try:
        def weights():
            return algo.learner_group.get_weights()["default_policy"]

        before = weights()
        result = algo.train()
        loss = result["learners"]["default_policy"]["policy_loss"]
        assert math.isfinite(float(loss))
        after = weights()
        changed = [k for k in before if not np.allclose(before[k], after[k])]
        assert changed, "one BC iteration on the demonstrations changed no weight"
    finally:
        algo.stop()


def test_bc_needs_demonstrations(split):
    from rl_models.algorithms import build_algorithm_config

    with pytest.raises(ConfigError, match="offline_data.input_"):
        build_algorithm_config("BC", env_config=split.env(TINY), model=TINY.model)


def test_agent_experiments_chain_bc_into_ppo(split, tmp_path):
    exps = agent_experiments(split, TINY, storage=tmp_path)
    assert list(exps) == ["bc_ppo", "ppo"]  # bc itself trains in-process
    with pytest.raises(ConfigError, match="train 'bc' first"):
        exps["bc_ppo"]({})
    fine_tune = exps["bc_ppo"]({"bc": "/ckpt/bc"})
    assert fine_tune["algorithm"] == "PPO" and fine_tune["init_module_from"] == "/ckpt/bc"
    assert fine_tune["env"]["songs"] == list(split.train)
    assert fine_tune["stop"] == {"time_total_s": int(TINY.minutes["bc_ppo"] * 60)}


def test_behaviour_cloning_learns_the_oracle_and_writes_a_checkpoint(split, tmp_path):
    from rl_models.app.behaviour_cloning import train_behaviour_cloning
    from rl_models.app.evaluate import play_songs
    from rl_models.app.module_policy import ModulePolicy
    from rl_models.checkpoints import load_policy

    demos = record_oracle_demonstrations(split, TINY, tmp_path / "demos")
    model = {**TINY.model, "hidden_size": 16, "attention_dim": 16, "max_seq_len": 8}
    out = train_behaviour_cloning(demos, env_config=split.env(TINY), model=model,
                                  out_dir=tmp_path / "bc", minutes=60, max_updates=100, seed=0,
                                  log=lambda m: None)
    losses = [loss for _, _, loss in out["curve"]]
    # An update budget, not a time budget: the result does not depend on the machine's load.
    assert out["updates"] == 100 and losses[-1] < losses[0]
    module, meta = load_policy(out["checkpoint"])
    assert meta["experiment"]["algorithm"] == "BC"
    song = split.train[0]
    rec = play_songs(ModulePolicy(module), split.env(TINY), names=[song])[0]
    assert np.isfinite(rec.mfcc_distance).all() and rec.gains.shape[0] == len(meta["slot_names"])


def test_scoring_puts_oracle_at_one_and_equal_at_zero(split, tmp_path):
    rows = score_policies({"equal": "equal", "oracle": "oracle", "loud": "loudness"}, split,
                          TINY, tmp_path / "eval")
    by = {r["label"]: r for r in rows}
    assert set(by) == {"equal", "oracle", "loud"}
    assert by["oracle"]["gap_closed"] == pytest.approx(1.0)
    assert by["equal"]["gap_closed"] == pytest.approx(0.0)
    assert by["oracle"]["mfcc_distance"] < 0.01 < by["equal"]["mfcc_distance"]
    assert by["oracle"]["gain_err_median_db"] < 0.01 < by["equal"]["gain_err_median_db"]
    assert (tmp_path / "eval" / "evaluation.csv").is_file()


def test_setup_rejects_bad_values():
    with pytest.raises(ConfigError, match="n_train must be an int >= 1"):
        dataclasses.replace(TINY, n_train=0)
    with pytest.raises(ConfigError, match="unknown agent"):
        dataclasses.replace(TINY, agents=("dqn",))


def test_every_tune_agent_has_a_valid_experiment(split, tmp_path):
    from rl_models.app.train import build_config

    setup = dataclasses.replace(TINY, agents=("bc", "bc_ppo", "ppo", "pg", "paper"))
    exps = agent_experiments(split, setup, storage=tmp_path)
    assert list(exps) == ["bc_ppo", "ppo", "pg", "paper"]
    for name, make in exps.items():
        exp = make({"bc": "/ckpt/bc"})
        # Raises ConfigError on any bad env or model value (no checkpoint to load here).
        build_config({k: v for k, v in exp.items() if k != "init_module_from"})
        raw = exp["env"]["obs_features"] == "raw"
        assert raw == (name == "paper"), name
        assert exp["env"].get("stem_level_features") is (not raw), name


def test_songs_are_sampled_unless_procedural_is_asked_for(tmp_path):
    assert QualitySetup().kind == "sampled" and QualitySetup().n_tracks == (6, 11)
    fast = QualitySetup(kind="procedural", n_train=1, n_heldout=1, seconds=0.5, n_tracks=(3, 4))
    assert QualitySetup(kind="procedural").n_tracks == (8, 24)
    split = make_split(tmp_path, fast)
    assert [n[:9] for n in split.train + split.heldout] == ["SynthSong", "SynthSong"]
    with pytest.raises(ConfigError, match="kind must be one of"):
        QualitySetup(kind="midi")
    with pytest.raises(ConfigError, match="4 <= lo <= hi <= 19"):  # sampled songs: >= 4 stems
        make_split(tmp_path / "few", dataclasses.replace(fast, kind="sampled"))


def test_command_line_setup_follows_the_kind():
    from benchmarks.bench_quality import parse_setup

    _, default = parse_setup(["--agents", "bc", "--seed", "11", "--minutes-scale", "0.5"])
    assert (default.kind, default.n_tracks, default.seed) == ("sampled", (6, 11), 11)
    assert default.minutes["bc"] == pytest.approx(5.0) and default.agents == ("bc",)
    _, procedural = parse_setup(["--kind", "procedural"])
    assert procedural.n_tracks == (8, 24)
    _, tiny = parse_setup(["--tiny", "--kind", "procedural", "--master-bus", "0.5"])
    assert (tiny.kind, tiny.n_tracks, tiny.n_train, tiny.master_bus) == (
        "procedural", (4, 6), 4, 0.5)
    _, own = parse_setup(["--n-tracks", "5", "7"])
    assert own.n_tracks == (5, 7)


def test_bc_ppo_needs_bc():
    with pytest.raises(ConfigError, match="bc_ppo fine-tunes the bc agent"):
        dataclasses.replace(TINY, agents=("bc_ppo",))


def test_prior_agents_start_at_the_fitted_balance(split, tmp_path):
    """With --prior, the RL agents get the table as their prior and play it at the start."""
    import torch

    from benchmarks.quality import prior_model_config
    from mixing_env.balance import fit_dataset_balance
    from mixing_env.baselines import InstrumentBalance
    from rl_models.app.evaluate import play_songs
    from rl_models.app.module_policy import ModulePolicy
    from rl_models.app.train import build_config
    from rl_models.attention_lstm import AttentionLSTMModule

    setup = dataclasses.replace(TINY, agents=("bc", "bc_ppo", "ppo", "pg", "paper"),
                                prior="instrument_balance")
    table = fit_dataset_balance(split.cache_dir, songs=split.train, out=tmp_path / "b.json")
    prior = prior_model_config(split, setup, table)
    assert prior_model_config(split, TINY, table) == {}  # no prior: nothing changes
    exps = agent_experiments(split, setup, storage=tmp_path, prior=prior)
    for name, make in exps.items():
        exp = make({"bc": "/ckpt/bc"})
        with_prior = name != "paper"
        assert exp["env"].get("stem_loudness_feature", False) is with_prior, name
        assert (exp["model"].get("level_prior_bias_db") == prior["level_prior_bias_db"]) \
            is with_prior, name
        build_config({k: v for k, v in exp.items() if k != "init_module_from"})
    # The PPO agent's module, freshly built, plays the instrument_balance gains on a song.
    env = MixingEnv(split.env(setup, heldout=True))
    torch.manual_seed(0)
    module = AttentionLSTMModule(observation_space=env.observation_space,
                                 action_space=env.action_space,
                                 model_config=exps["ppo"]({})["model"])
    song = split.heldout[0]
    rec = play_songs(ModulePolicy(module), split.env(setup, heldout=True), names=[song])[0]
    ib = InstrumentBalance.read(table).gains(env.source.load(song))[:, : rec.gains.shape[1]]
    real = env.source.load(song).track_mask > 0
    assert real.sum() >= 4
    # The deterministic action is the Dirichlet's mean, (kappa * beta + floor / n) / (kappa +
    # floor), with beta the prior's softmax: the table's gains.
    kappa, floor = prior["concentration_scale"], 0.05
    expected = (kappa * ib[real] + floor / real.sum()) / (kappa + floor)
    np.testing.assert_allclose(rec.gains[real], expected, atol=1e-4)
    assert np.ptp(ib[real][:, 0]) > 0.02  # not equal gains


def test_setup_rejects_an_unknown_prior():
    with pytest.raises(ConfigError, match="prior must be one of"):
        dataclasses.replace(TINY, prior="loudness")


def test_masking_options_reach_the_setup_and_are_checked():
    from benchmarks.bench_quality import parse_setup

    _, on = parse_setup(["--masking-db", "8", "--own-sd-scale", "0.5", "--group-sd-scale", "0"])
    assert (on.masking_db, on.own_sd_scale, on.group_sd_scale) == (8.0, 0.5, 0.0)
    _, default = parse_setup([])
    assert (default.masking_db, default.own_sd_scale, default.group_sd_scale) == (0.0, 1.0, 1.0)
    with pytest.raises(ConfigError, match="own_sd_scale must be a finite number >= 0"):
        dataclasses.replace(TINY, own_sd_scale=-1.0)
    with pytest.raises(ConfigError, match="kind='procedural' has none"):
        QualitySetup(kind="procedural", masking_db=6.0)
    with pytest.raises(ConfigError, match="kind='procedural' has none"):
        QualitySetup(kind="procedural", group_sd_scale=0.5)
    assert QualitySetup(kind="procedural").masking_db == 0.0  # the defaults are fine
