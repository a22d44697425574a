"""The learning benchmark's pieces on tiny data: songs, table, experiments, BC, scoring."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.quality import (
    QualitySetup,
    agent_experiments,
    fit_table,
    heldout_cache,
    score_policies,
    train_sample_songs,
)
from mixing_env.data.cache import PreparedDataset
from mixing_env.errors import ConfigError

TINY = QualitySetup(n_heldout=2, n_table=3, n_train_sample=2, seconds=2.0, n_tracks=(4, 5),
                    episode_chunks=16, episodes_per_song=2, eval_songs=1,
                    agents=("bc", "bc_ppo", "ppo", "pg"),
                    model={**QualitySetup().model, "hidden_size": 8, "attention_dim": 8,
                           "embed_dim": 4, "max_seq_len": 8})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return heldout_cache(tmp_path_factory.mktemp("quality"), TINY)


def test_heldout_songs_are_made_once_and_never_in_the_training_stream(cache):
    names = sorted(PreparedDataset(cache).names)
    assert names == ["SampledSong001", "SampledSong002"]
    stamp = (Path(cache) / "manifest.json").stat().st_mtime_ns
    assert heldout_cache(Path(cache).parent, TINY) == cache
    assert (Path(cache) / "manifest.json").stat().st_mtime_ns == stamp
    songs, cost = train_sample_songs(TINY, 2)
    assert cost > 0 and all(s.name.startswith("Stream1-7-") for s in songs)
    held = json.loads((Path(cache).parent / "songs" / "SampledSong001"
                       / "sampled.json").read_text())
    assert held["skeleton"][1] == 0  # stream 0: datasets on disk; training streams are >= 1


def test_the_table_is_fitted_on_training_songs():
    table, cost = fit_table(TINY)
    assert table.meta["songs"][0].startswith("Stream1-") and len(table.meta["songs"]) == 3
    assert "Vocals/Lead#1" in table.slots or "Drums/Kick#1" in table.slots


def test_agent_experiments_train_on_the_stream_and_score_held_out(cache, tmp_path):
    from rl_models.app.train import build_config

    exps = agent_experiments(TINY, cache=cache, eval_songs=["SampledSong001"],
                             storage=tmp_path)
    assert list(exps) == ["bc_ppo", "ppo", "pg"]  # bc trains in-process
    with pytest.raises(ConfigError, match="train 'bc' first"):
        exps["bc_ppo"]({})
    fine_tune = exps["bc_ppo"]({"bc": "/ckpt/bc"})
    assert fine_tune["algorithm"] == "PPO" and fine_tune["init_module_from"] == "/ckpt/bc"
    for name, make in exps.items():
        exp = make({"bc": "/ckpt/bc"})
        assert exp["env"]["generated"]["seed"] == TINY.seed and "dataset_dir" not in exp["env"]
        assert exp["evaluation"]["env"]["dataset_dir"] == cache
        assert exp["stop"] == {"time_total_s": int(TINY.minutes[name] * 60)}
        build_config({k: v for k, v in exp.items() if k != "init_module_from"})


def test_bc_on_the_stream_learns_and_its_checkpoint_scores(cache, tmp_path):
    from rl_models.app.behaviour_cloning import StreamDemonstrations, train_behaviour_cloning

    stream = StreamDemonstrations(TINY.train_env(), seed=0)
    # A fixed buffer (no fresh songs) so the loss falls: a fit, not a moving target.
    out = train_behaviour_cloning(stream, env_config=TINY.train_env(), model=TINY.model,
                                  out_dir=tmp_path / "bc", minutes=60, max_updates=150,
                                  batch_size=8, buffer_episodes=16, fresh_per_update=0.0,
                                  loss="log_gain", log=lambda m: None)
    losses = [loss for _, _, loss in out["curve"]]
    # An update budget, not a time budget: the result does not depend on the machine's load.
    assert out["updates"] == 150 and np.mean(losses[-2:]) < np.mean(losses[:2])
    assert out["songs"] >= 8 and out["demo_cpu_s"] > 0
    fresh = train_behaviour_cloning(stream, env_config=TINY.train_env(), model=TINY.model,
                                    out_dir=tmp_path / "bc2", minutes=60, max_updates=4,
                                    batch_size=8, buffer_episodes=16, fresh_per_update=2.0,
                                    log=lambda m: None)
    assert fresh["songs"] > out["songs"]  # new songs keep coming in
    rows = score_policies({b: b for b in ("equal", "bound", "oracle")} | {
        "instrument_balance": "loudness", "agent": out["checkpoint"]}, TINY, cache,
        tmp_path / "eval")
    by = {r["label"]: r for r in rows}
    assert by["oracle"]["gap_closed"] == pytest.approx(1.0)
    assert by["equal"]["gap_closed"] == pytest.approx(0.0)
    assert by["bound"]["headroom_share"] == pytest.approx(1.0)
    assert np.isfinite(by["agent"]["gap_closed"])


def test_setup_rejects_bad_values():
    with pytest.raises(ConfigError, match="n_heldout must be an int >= 1"):
        dataclasses.replace(TINY, n_heldout=0)
    with pytest.raises(ConfigError, match="unknown agent"):
        dataclasses.replace(TINY, agents=("dqn",))
    with pytest.raises(ConfigError, match="bc_ppo continues the bc agent"):
        dataclasses.replace(TINY, agents=("bc_ppo",))
    with pytest.raises(ConfigError, match="bc_more continues the bc agent"):
        dataclasses.replace(TINY, agents=("bc_more",))
    with pytest.raises(ConfigError, match=r"minutes\['ppo'\] must be in \(0, 45\]"):
        dataclasses.replace(TINY, minutes={**TINY.minutes, "ppo": 60})
    with pytest.raises(ConfigError, match="unknown engineer style"):
        dataclasses.replace(TINY, style="jazz")
    with pytest.raises(ConfigError, match=r"unknown bc_training key\(s\) \['epochs'\]"):
        dataclasses.replace(TINY, bc_training={"epochs": 3})


def test_fine_tuning_settings_reach_the_bc_ppo_experiment(cache, tmp_path):
    from rl_models.app.train import build_config

    setup = dataclasses.replace(TINY, bc_ppo_training={"lr": 1e-5},
                                bc_ppo_model={"value_detach": True})
    exps = agent_experiments(setup, cache=cache, eval_songs=["SampledSong001"],
                             storage=tmp_path)
    fine_tune, scratch = exps["bc_ppo"]({"bc": "/ckpt/bc"}), exps["ppo"]({})
    assert fine_tune["training"]["lr"] == 1e-5 and fine_tune["model"]["value_detach"] is True
    assert fine_tune["model"]["hidden_size"] == TINY.model["hidden_size"]
    assert scratch["training"]["lr"] == 1e-3 and "value_detach" not in scratch["model"]
    assert "learner_config_dict" not in fine_tune.get("resources", {})
    # DAPG: BC's loss on the engineer's demonstrations stays in the fine-tuning's loss
    setup = dataclasses.replace(TINY, whole_songs=True, bc_ppo_imitation=2.0,
                                bc_training={"loss": "log_gain"}, bc_ppo_baseline=8,
                                bc_ppo_trainable=("prior_bias", "_value_head"))
    exp = agent_experiments(setup, cache=cache, eval_songs=["SampledSong001"],
                            storage=tmp_path)["bc_ppo"]({"bc": "/ckpt/bc"})
    assert exp["resources"]["learner_config_dict"]["episode_baseline"] == 8
    assert exp["resources"]["learner_config_dict"]["trainable"] == ["prior_bias", "_value_head"]
    term = exp["resources"]["learner_config_dict"]["demonstrations"]
    assert term["coeff"] == 2.0 and term["loss"] == "log_gain" and term["stored_states"]
    assert term["env"]["generated"]["episodes_per_song"] == 1  # whole songs, as BC had them
    build_config({k: v for k, v in exp.items() if k != "init_module_from"})
    with pytest.raises(ConfigError, match="bc_ppo_imitation must be a finite number >= 0"):
        dataclasses.replace(TINY, bc_ppo_imitation=-1.0)
    with pytest.raises(ConfigError, match="bc_ppo_baseline must be an int >= 0"):
        dataclasses.replace(TINY, bc_ppo_baseline=-2)
    # Self-critical: the fine-tuning's env scores the mean action too; the others' does not.
    setup = dataclasses.replace(TINY, bc_ppo_self_critical=True)
    exps = agent_experiments(setup, cache=cache, eval_songs=["SampledSong001"],
                             storage=tmp_path)
    exp = exps["bc_ppo"]({"bc": "/ckpt/bc"})
    assert exp["env"]["self_critical"] is True and exp["env"]["generated"]
    assert "self_critical" not in exps["ppo"]({})["env"]
    build_config({k: v for k, v in exp.items() if k != "init_module_from"})
    with pytest.raises(ConfigError, match="bc_ppo_self_critical must be a bool"):
        dataclasses.replace(TINY, bc_ppo_self_critical="yes")
    with pytest.raises(ConfigError, match="bc_ppo_concentration must be a positive number"):
        dataclasses.replace(TINY, bc_ppo_concentration=-5.0)


def test_bc_ppo_starts_from_the_clone_with_its_concentration_set(cache, tmp_path, monkeypatch):
    import rl_models.checkpoints as checkpoints

    seen = []
    monkeypatch.setattr(checkpoints, "with_concentration_scale",
                        lambda path, scale, out: seen.append((path, scale, out)) or out)
    setup = dataclasses.replace(TINY, bc_ppo_concentration=400.0)
    exps = agent_experiments(setup, cache=cache, eval_songs=["SampledSong001"],
                             storage=tmp_path)
    exp = exps["bc_ppo"]({"bc": "/ckpt/bc"})
    start = tmp_path.resolve() / "bc_ppo_start"
    assert seen == [("/ckpt/bc", 400.0, start)] and exp["init_module_from"] == str(start)
    assert exps["ppo"]({}).get("init_module_from") is None


def test_the_control_continues_bc_at_bc_ppos_rate_for_bc_ppos_minutes(tmp_path, monkeypatch):
    import torch

    import rl_models.app.behaviour_cloning as behaviour_cloning
    from benchmarks.quality import continue_bc

    setup = dataclasses.replace(TINY, whole_songs=True, agents=("bc", "bc_more", "bc_ppo"),
                                minutes={**TINY.minutes, "bc_ppo": 0.05},
                                bc_ppo_training={"lr": 7e-4})
    bc = behaviour_cloning.train_behaviour_cloning(
        behaviour_cloning.StreamDemonstrations(setup.train_env(), seed=0),
        env_config=setup.train_env(), model=setup.model, out_dir=tmp_path / "bc", minutes=60,
        max_updates=3, batch_size=4, buffer_episodes=8, log=lambda m: None)
    seen = {}
    real = behaviour_cloning.train_behaviour_cloning

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(behaviour_cloning, "train_behaviour_cloning", spy)
    more = continue_bc(setup, bc["checkpoint"], tmp_path / "more", log=lambda m: None)
    assert seen["lr"] == 7e-4 and seen["minutes"] == 0.05 and seen["stored_states"]
    assert seen["initial_weights"] == Path(bc["checkpoint"]) / "policy_weights.pt"
    assert more["updates"] >= 1 and more["checkpoint"] != bc["checkpoint"]
    before, after = (torch.load(Path(c) / "policy_weights.pt", weights_only=True)
                     for c in (bc["checkpoint"], more["checkpoint"]))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on


def test_an_earlier_bc_checkpoint_is_reused(tmp_path):
    from benchmarks.quality import reused_bc

    ckpt = tmp_path / "bc" / "checkpoint_000000"
    ckpt.mkdir(parents=True)
    with pytest.raises(ConfigError, match="no progress.json beside it"):
        reused_bc(ckpt)
    (ckpt.parent / "progress.json").write_text(json.dumps(
        {"updates": 50, "curve": [[25, 10.0, -3.0], [50, 21.5, -4.0]], "songs": 9}))
    bc = reused_bc(ckpt)
    assert bc["checkpoint"] == str(ckpt.resolve()) and bc["wall_s"] == 21.5
    assert bc["songs"] == 9


def test_command_line_setup():
    from benchmarks.bench_quality import learning_rows, parse_setup

    args, setup = parse_setup(["--agents", "bc", "--seeds", "7", "11", "--minutes-scale", "0.5",
                               "--style", "rock"])
    assert args.seeds == [7, 11] and setup.agents == ("bc",) and setup.style == "rock"
    assert setup.minutes["bc"] == pytest.approx(QualitySetup().minutes["bc"] / 2)
    _, control = parse_setup(["--agents", "bc", "bc_more", "bc_ppo", "--minutes", "bc_ppo=12"])
    assert control.agents == ("bc", "bc_more", "bc_ppo") and control.minutes_of("bc_more") == 12
    _, control = parse_setup(["--agents", "bc", "bc_more", "--minutes", "bc_more=5"])
    assert control.minutes_of("bc_more") == 5
    _, tuned = parse_setup(["--bc", "lr=1e-3", "loss=log_gain", "--bc-ppo-training",
                            "lr=1e-4", "--bc-ppo-model", "value_detach=true",
                            "--model", "hidden_size=64", "--stem-spectrum"])
    assert tuned.bc_training == {"lr": 1e-3, "loss": "log_gain"}
    assert tuned.bc_ppo_training == {"lr": 1e-4} and tuned.bc_ppo_model == {"value_detach": True}
    assert tuned.model["hidden_size"] == 64 and tuned.features()["stem_spectrum_features"]
    assert not setup.features()["stem_spectrum_features"]
    with pytest.raises(ConfigError, match=r"bc_training\['batch_size'\] must be of type int"):
        parse_setup(["--bc", "batch_size=many"])
    _, whole = parse_setup(["--whole-songs"])
    env = whole.train_env()
    assert env["episode_chunks"] is None and not setup.whole_songs
    assert env["generated"]["episodes_per_song"] == 4  # 32 windows of 128 ~ 4 songs of 12 s
    assert setup.train_env()["episode_chunks"] == 128
    _, tiny = parse_setup(["--tiny", "--minutes", "ppo=0.5"])
    assert tiny.n_heldout == 2 and tiny.minutes["ppo"] == 0.5
    payload = {"seed": 7, "style": "pop", "train_gap_closed": {"bc": 0.7},
               "rows": [{"label": "BC (engineer's decisions)", "gap_closed": 0.6,
                         "headroom_share": 0.3},
                        {"label": "equal", "gap_closed": 0.0, "headroom_share": -1.0}]}
    rows = learning_rows([payload])
    assert rows[0] == {"seed": 7, "style": "pop", "policy": "bc", "gap_closed": 0.6,
                       "headroom_share": 0.3, "train_gap_closed": 0.7,
                       "generalisation_gap": pytest.approx(0.1)}
    assert rows[1]["policy"] == "equal" and rows[1]["generalisation_gap"] is None


def test_merge_gathers_seeds_run_apart(tmp_path):
    from benchmarks.bench_quality import main

    def seed_run(name, seed, equal=0.0, agents=()):
        folder = tmp_path / name / f"seed{seed}"
        folder.mkdir(parents=True)
        rows = [{"label": "equal", "gap_closed": equal, "headroom_share": -1.0}]
        rows += [{"label": label, "gap_closed": g, "headroom_share": 0.1} for label, g in agents]
        payload = {"seed": seed, "style": "pop", "command": name, "load_average": [2.0],
                   "train_gap_closed": {a: 0.5 for a, _ in agents},
                   "wall_s": {a: 60.0 for a, _ in agents}, "songs": {}, "rows": rows}
        (folder / "results.json").write_text(json.dumps(payload))

    seed_run("a", 7, agents=[("BC (engineer's decisions)", 0.6), ("PPO from scratch", 0.58)])
    seed_run("b", 11)
    assert main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "m")]) == 0
    table = json.loads((tmp_path / "m" / "learning.json").read_text())
    assert [r["seed"] for r in table["rows"]] == [7, 7, 7, 11]
    assert table["commands"] == {"7": "a", "11": "b"}
    # a later run of seed 7 (same held-out songs): its BC replaces the first run's
    seed_run("c", 7, agents=[("BC (engineer's decisions)", 0.7), ("BC + PPO", 0.72)])
    assert main(["--merge", str(tmp_path / "a"), str(tmp_path / "c"),
                 "--out", str(tmp_path / "n")]) == 0
    table = json.loads((tmp_path / "n" / "learning.json").read_text())
    assert {r["policy"]: r["gap_closed"] for r in table["rows"]} == {
        "equal": 0.0, "bc": 0.7, "ppo_scratch": 0.58, "bc_ppo": 0.72}
    assert table["commands"] == {"7": "a + c"}
    seed_run("d", 7, equal=0.01)  # other held-out songs
    with pytest.raises(SystemExit, match="other held-out songs"):
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "d"), "--out", str(tmp_path / "o")])


def test_stored_states_are_the_module_state_at_each_sequence_start():
    import torch
    import tree
    from ray.rllib.core.columns import Columns

    from mixing_env.envs.song_source import SongSource
    from rl_models.imitation import StoredStates, StreamDemonstrations
    from rl_models.registry import DEFAULT_MODULE, module_spec

    env = dataclasses.replace(TINY, whole_songs=True).train_env()
    obs, actions = StreamDemonstrations(env, seed=0).next_episode()
    spec = module_spec(DEFAULT_MODULE, dict(TINY.model))
    spec.observation_space, spec.action_space = SongSource(env).spaces()
    module = spec.build()
    L = TINY.model["max_seq_len"]
    states = StoredStates(module, L).states(obs, len(actions))
    assert len(states) == len(actions) // L
    init = tree.map_structure(lambda x: torch.as_tensor(np.asarray(x))[None],
                              module.get_initial_state())
    for name, x in states[0].items():
        assert torch.equal(x, init[name])
    with torch.no_grad():  # one pass over the first 2 L chunks reaches the third start's state
        whole = module.forward_train({Columns.OBS: tree.map_structure(
            lambda x: torch.as_tensor(x[None, : 2 * L]), obs), Columns.STATE_IN: init})
    for name, x in whole[Columns.STATE_OUT].items():
        torch.testing.assert_close(states[2][name], x, rtol=1e-4, atol=1e-5)


def test_bc_with_stored_states_learns_from_whole_songs(tmp_path):
    from rl_models.app.behaviour_cloning import StreamDemonstrations, train_behaviour_cloning

    env = dataclasses.replace(TINY, whole_songs=True).train_env()
    assert env["episode_chunks"] is None
    stream = StreamDemonstrations(env, seed=0)
    out = train_behaviour_cloning(stream, env_config=env, model=TINY.model,
                                  out_dir=tmp_path / "bc", minutes=60, max_updates=120,
                                  batch_size=4, buffer_episodes=4, fresh_per_update=0.0,
                                  loss="log_gain", stored_states=True, log=lambda m: None)
    losses = [loss for _, _, loss in out["curve"]]
    assert out["updates"] == 120 and np.mean(losses[-2:]) < np.mean(losses[:2])
    # whole songs: one demonstration episode per song, from its first chunk to its last
    first, actions = stream.next_episode()
    assert len(actions) == first["chunks"].shape[0] > TINY.episode_chunks


def _saved_weights(result: dict) -> dict:
    import torch

    return torch.load(Path(result["checkpoint"]) / "policy_weights.pt", weights_only=True)


def test_bc_keeps_the_weights_validation_liked_best_and_averages_them(tmp_path):
    import torch

    from rl_models.app.behaviour_cloning import StreamDemonstrations, train_behaviour_cloning

    env = TINY.train_env()
    common = {"env_config": env, "model": TINY.model, "minutes": 60, "batch_size": 4,
              "buffer_episodes": 8, "fresh_per_update": 0.0, "loss": "log_gain",
              "log": lambda m: None}
    seen: list[dict] = []

    def validation(module):  # likes the weights of the third validation best
        seen.append({k: v.clone() for k, v in module.state_dict().items()})
        return {"gap_closed": [0.1, 0.2, 0.5, 0.3][min(len(seen) - 1, 3)]}

    out = train_behaviour_cloning(StreamDemonstrations(env, seed=0), out_dir=tmp_path / "v",
                                  max_updates=6, validation=validation,
                                  validation_every_s=0.0, **common)
    assert [row[2] for row in out["validation_curve"]][:4] == [0.1, 0.2, 0.5, 0.3]
    assert out["selected"] == out["validation_curve"][2] and out["selected"][0] == 3
    saved = _saved_weights(out)
    assert all(torch.equal(saved[k], seen[2][k]) for k in saved)
    assert not all(torch.equal(saved[k], seen[-1][k]) for k in saved)

    def moved(result: dict) -> float:  # how far training took the saved weights
        w = _saved_weights(result)
        return sum(float((w[k] - start[k]).norm()) for k in w)

    start = _saved_weights(train_behaviour_cloning(
        StreamDemonstrations(env, seed=0), out_dir=tmp_path / "init", max_updates=1,
        **common | {"lr": 0.0}))
    last, averaged = (train_behaviour_cloning(
        StreamDemonstrations(env, seed=0), out_dir=tmp_path / f"ema{d}", max_updates=30,
        ema_decay=d, **common) for d in (0.0, 0.99))
    assert moved(averaged) < 0.5 * moved(last)  # the average trails the last weights
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        train_behaviour_cloning(StreamDemonstrations(env, seed=0), out_dir=tmp_path / "x",
                                max_updates=1, ema_decay=1.0, **common)


def test_learning_curves_plot_each_evaluation_once_and_skip_iterations_without_episodes(
        tmp_path):
    from rl_models.app.plots import evaluation_points, plot_learning_curves

    nan = float("nan")
    rows = [{"iteration": i, "time_s": 10.0 * i, "return_mean": r, "policy_loss": 0.1,
             "gap_closed": g, "env_steps": None}
            for i, (r, g) in enumerate([(nan, nan), (5.0, 0.6), (nan, 0.6), (nan, 0.6),
                                        (6.0, 0.7), (nan, 0.7)])]
    assert evaluation_points(rows) == [(10.0, 0.6), (40.0, 0.7)]
    png = plot_learning_curves({"bc_ppo": rows}, tmp_path / "curves.png")
    assert png.stat().st_size > 0


def test_reward_noise_splits_the_reward_variance_of_a_checkpoint(cache, tmp_path):
    from benchmarks.bench_reward_noise import main
    from rl_models.checkpoints import PRETRAINED_DIR

    args = ["--checkpoint", str(PRETRAINED_DIR), "--songs", cache, "--horizons", "1", "8"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "reward_noise.json").read_text()) for d in "ab")
    assert a["songs"] == 2 and a["steps"] > 0
    assert a["var_sampling"] > 0  # drawn actions differ from the mean action
    assert 0 <= a["var_between_songs"] <= a["var_state"]
    assert set(a["var_after_episode_baseline"]) == {"1", "8"}
    assert a["var_state"] == b["var_state"] and a["var_total"] == b["var_total"]  # seeded
    with pytest.raises(ConfigError, match="no such folder"):
        main(["--checkpoint", str(PRETRAINED_DIR), "--songs", str(tmp_path / "none")])
