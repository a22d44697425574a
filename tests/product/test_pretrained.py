"""The shipped pretrained agent: found by name, loaded without pickle, mixes, evaluates, remade."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from mixing_env.errors import CheckpointError, ConfigError
from rl_models import checkpoints
from rl_models.app.demo_augmentation import DB_FLOOR, make_demo_augmentation, make_prior_rebase
from rl_models.app.pretrained import PretrainedRecipe, export_pretrained

SHIPPED = {checkpoints.METADATA_FILE, checkpoints.POLICY_CONFIG_FILE, checkpoints.WEIGHTS_FILE}


@pytest.fixture
def no_pickle(monkeypatch):
    """Fails on RLlib's pickled module loading; records that every torch.load is weights-only."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    calls = []
    real_load = torch.load

    def refuse(*args, **kwargs):
        raise AssertionError("RLlib's pickled module checkpoint was read")

    def weights_only_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(RLModule, "from_checkpoint", refuse)
    monkeypatch.setattr(torch, "load", weights_only_load)
    return calls


def test_the_shipped_folder_holds_plain_files_only():
    names = {p.name for p in checkpoints.PRETRAINED_DIR.iterdir()}
    assert SHIPPED <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]
    assert checkpoints.PRETRAINED_DIR.joinpath(checkpoints.WEIGHTS_FILE).stat().st_size < 5e6
    meta = json.loads((checkpoints.PRETRAINED_DIR / checkpoints.METADATA_FILE).read_text())
    assert "dataset_dir" not in meta["experiment"]["env"]  # no path of the training machine
    assert len(meta["slot_names"]) == 72  # the fixed layout: it plays any prepared dataset


def test_pretrained_resolves_and_loads_without_unpickling(no_pickle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpoints.resolve_checkpoint_path("pretrained") == checkpoints.PRETRAINED_DIR
    module, meta = checkpoints.load_policy("pretrained")
    assert meta["checkpoint"] == str(checkpoints.PRETRAINED_DIR)
    assert no_pickle == [True]
    assert sum(p.numel() for p in module.parameters()) > 0


def test_a_folder_named_pretrained_in_the_working_directory_wins(tmp_path, monkeypatch):
    mine = tmp_path / "pretrained"
    mine.mkdir()
    monkeypatch.chdir(tmp_path)
    assert checkpoints.resolve_checkpoint_path("pretrained") == mine.relative_to(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint under pretrained"):
        checkpoints.load_policy("pretrained")


def test_a_missing_shipped_agent_names_the_command_that_remakes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", tmp_path / "gone")
    with pytest.raises(CheckpointError, match="deepmixing pretrained train"):
        checkpoints.load_policy("pretrained")


def test_mix_pretrained_writes_the_mix_and_its_automation(deepmixing, product_songs, tmp_path,
                                                          no_pickle):
    song = sorted(p for p in product_songs.iterdir() if p.is_dir())[0]
    out = tmp_path / "mix"
    assert deepmixing("mix", "pretrained", song, "--out", out, "--no-progress") == 0
    assert len(list(out.glob("*_mix.wav"))) == 1
    with open(next(out.glob("*_automation.csv"))) as f:
        rows = list(csv.reader(f))
    automation = json.loads(next(out.glob("*_automation.json")).read_text())
    assert len(rows) > 2 and len(rows[0]) >= 4  # a header, one column per stem
    assert json.dumps(automation)  # plain JSON
    assert no_pickle and all(flag is True for flag in no_pickle)


def test_evaluate_pretrained_gives_finite_rows(deepmixing, product_cache, tmp_path):
    out = tmp_path / "evaluation"
    assert deepmixing("evaluate", "pretrained", "equal", "--dataset", product_cache,
                      "--out", out, "--no-plots", "--no-progress") == 0
    rows = json.loads((out / "evaluation.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    mine = [r for r in rows if r["policy"] == "pretrained"]
    assert len(mine) == 3  # two songs and the mean
    assert all(math.isfinite(r["mfcc_distance"]) and math.isfinite(r["gap_closed"])
               for r in mine)


def test_the_retrain_command_remakes_and_exports_an_agent(deepmixing, tmp_path):
    out, work = tmp_path / "agent", tmp_path / "work"
    assert deepmixing("pretrained", "train", "--out", out, "--work", work, "--n-songs", 2,
                      "--seconds", 1.5, "--tracks", 4, "--tracks-max", 5,
                      "--episode-chunks", 40, "--demo-episodes-per-song", 1,
                      "--max-updates", 2, "--minutes", 5) == 0
    assert {p.name for p in out.iterdir()} == SHIPPED
    meta = json.loads((out / checkpoints.METADATA_FILE).read_text())
    assert meta["iteration"] == 2 and meta["experiment"]["algorithm"] == "BC"
    assert meta["experiment"]["env"]["stem_level_features"] is True
    assert meta["experiment"]["env"]["stem_loudness_feature"] is True  # the prior's input
    model = meta["experiment"]["model"]
    assert len(model["level_prior_bias_db"]) == 72
    assert model["learn_level_prior"] is False and model["level_prior"] == 0.75  # the design
    assert (work / "instrument_balance.json").is_file()
    assert "dataset_dir" not in meta["experiment"]["env"]
    # the transfer benchmark's "prior alone" row: the same agent with its correction gated off
    from benchmarks.bench_transfer import prior_only_checkpoint

    alone, _ = checkpoints.load_policy(prior_only_checkpoint(str(out), tmp_path / "alone"))
    gates = {k: v for k, v in alone.state_dict().items() if k.endswith("residual_gate")}
    assert gates and all(float(v) == 0.0 for v in gates.values())
    module, _ = checkpoints.load_policy(out)
    assert json.loads((work / "recipe.json").read_text())["n_songs"] == 2
    assert meta["experiment"]["recipe"]["n_songs"] == 2 and meta["experiment"]["recipe"]["seed"]
    # exporting again replaces the folder and keeps what else lies in it
    (out / "README.txt").write_text("mine")
    assert export_pretrained(work / "run", out) == out
    assert {p.name for p in out.iterdir()} == SHIPPED | {"README.txt"}


def test_export_refuses_a_file_as_its_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export_pretrained(checkpoints.PRETRAINED_DIR, target)


def _sequence(rng, length=5, slots=6, features=4):
    chunks = rng.uniform(-80, -10, (length, slots, 1, features)).astype(np.float32)
    chunks[:, 4:] = DB_FLOOR  # two dummy slots
    chunks[0, 0, 0, 0] = DB_FLOOR  # a silent feature of a real stem
    mask = np.tile(np.array([1, 1, 1, 1, 0, 0], np.float32), (length, 1))
    actions = rng.dirichlet(np.ones(4), length).astype(np.float32)
    actions = np.concatenate([actions, np.zeros((length, 2), np.float32)], axis=1)
    return {"chunks": chunks, "track_mask": mask, "mix_mfcc": np.ones((length, 3))}, actions


def test_level_augmentation_keeps_the_demonstrated_mix():
    rng = np.random.default_rng(0)
    obs, actions = _sequence(rng)
    new_obs, new_actions = make_demo_augmentation(level_sd_db=6.0, slot_shuffle=0.0)(
        obs, actions, np.random.default_rng(1))
    shift = new_obs["chunks"][1, :, 0, 0] - obs["chunks"][1, :, 0, 0]  # dB per slot
    assert np.abs(shift[:4]).max() > 1.0 and np.all(shift[4:] == 0)  # dummies stay silent
    assert np.allclose(new_obs["chunks"][1:] - obs["chunks"][1:], shift[None, :, None, None],
                       atol=1e-3)
    assert new_obs["chunks"][0, 0, 0, 0] == DB_FLOOR  # silence is not lifted
    # stem i scaled by c_i = 10^(shift_i/20) with gain a'_i: the same mix up to one factor
    contribution = new_actions[:, :4] * 10 ** (shift[:4] / 20)
    ratio = contribution / actions[:, :4]
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4)
    assert np.allclose(new_actions.sum(-1), 1.0, atol=1e-5)
    assert np.array_equal(new_obs["mix_mfcc"], obs["mix_mfcc"])


def test_level_augmentation_after_a_rebase_moves_gains_by_the_priors_weight():
    rng = np.random.default_rng(4)
    obs, actions = _sequence(rng)
    new_obs, new_actions = make_demo_augmentation(
        level_sd_db=6.0, slot_shuffle=0.0, gain_follows_level=0.5)(
        obs, actions, np.random.default_rng(1))
    shift = new_obs["chunks"][1, :, 0, 0] - obs["chunks"][1, :, 0, 0]
    ratio = new_actions[:, :4] * 10 ** (0.5 * shift[:4] / 20) / actions[:, :4]
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4)


def test_rebase_keeps_the_oracles_moves_on_the_priors_balance():
    rng = np.random.default_rng(5)
    obs, actions = _sequence(rng, length=12)
    obs["chunks"][:, :4, :, -1] = np.array([-20.0, -30.0, -25.0, -100.0])[None, :, None]
    bias_db, w = [3.0, -2.0, 0.0, 1.0, 0.0, 0.0], 0.75
    _, new = make_prior_rebase(bias_db, w)(obs, actions)
    assert np.allclose(new.sum(-1), 1.0, atol=1e-5) and np.all(new[:, 4:] == 0)
    log_old, log_new = np.log(actions[:, :4]), np.log(new[:, :4])
    # slot 3 is silent all song: its level is the mean of those playing, as in the module
    level = np.array([-20.0, -30.0, -25.0, -25.0])
    prior_db = np.array(bias_db[:4]) - w * level
    for i, j in ((0, 1), (1, 2), (0, 3)):
        diff_new, diff_old = log_new[:, i] - log_new[:, j], log_old[:, i] - log_old[:, j]
        # the static balance is the prior's ...
        assert np.isclose(diff_new.mean() * 20 / np.log(10), prior_db[i] - prior_db[j],
                          atol=1e-3)
        # ... and every move within the episode is the oracle's
        assert np.allclose(diff_new - diff_new.mean(), diff_old - diff_old.mean(), atol=1e-4)


def test_recipe_refuses_an_unknown_prior_and_settings_outside_0_1():
    with pytest.raises(ConfigError, match="prior must be one of"):
        PretrainedRecipe(prior="table")
    with pytest.raises(ConfigError, match="prior_weight"):
        PretrainedRecipe(prior_weight=1.5)
    with pytest.raises(ConfigError, match="prior_shrink"):
        PretrainedRecipe(prior_shrink=-0.1)


def test_slot_shuffle_moves_features_mask_and_actions_together():
    rng = np.random.default_rng(2)
    obs, actions = _sequence(rng)
    new_obs, new_actions = make_demo_augmentation(level_sd_db=0.0, slot_shuffle=1.0)(
        obs, actions, np.random.default_rng(3))
    assert not np.array_equal(new_actions, actions)
    for j in range(actions.shape[1]):  # each new slot j holds some old slot i whole
        i = int(np.argmin(np.abs(obs["chunks"][:, :, 0, 1]
                                 - new_obs["chunks"][:, j:j + 1, 0, 1]).sum(0)))
        assert np.array_equal(new_actions[:, j], actions[:, i])
        assert np.array_equal(new_obs["track_mask"][:, j], obs["track_mask"][:, i])


def test_augmentation_refuses_bad_settings():
    with pytest.raises(ConfigError, match="slot_shuffle"):
        make_demo_augmentation(slot_shuffle=1.5)
    with pytest.raises(ConfigError, match="level_sd_db"):
        make_demo_augmentation(level_sd_db=-1.0)


def test_the_transfer_benchmark_moves_role_levels_only_inside_its_block():
    from benchmarks.bench_transfer import ENGINEERS, KIND_SPECS, engineer_mixing_model, no_harm
    from mixing_env.songs.sampled import mixing_model

    before = dict(mixing_model.ROLE_LEVEL_DB)
    for engineer, (shift_db, spread) in ENGINEERS.items():
        with engineer_mixing_model(engineer):
            mean, sd = mixing_model.ROLE_LEVEL_DB["hihat"]
            assert mean == before["hihat"][0] + shift_db["hihat"]
            assert sd == before["hihat"][1] * spread
        assert mixing_model.ROLE_LEVEL_DB == before
    assert ENGINEERS["shifted"][0] != ENGINEERS["other"][0]
    assert {KIND_SPECS[k]["recording_level"] for k in KIND_SPECS} == {"random", "natural"}
    rows = [{"policy": "agent", "mfcc_distance": 18.0}, {"policy": "equal", "mfcc_distance": 19.0},
            {"policy": "loudness", "mfcc_distance": 17.0}]
    assert not no_harm(rows, "agent")  # loudness is better: harm
    rows[0]["mfcc_distance"] = 16.0
    assert no_harm(rows, "agent")
