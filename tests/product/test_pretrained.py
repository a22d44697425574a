"""The shipped pretrained agent: found by name, loaded without pickle, mixes, evaluates, remade,
and checked on songs unlike its training songs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from mixing_env.errors import CheckpointError, ConfigError
from rl_models import checkpoints
from rl_models.app.pretrained import PretrainedRecipe, export_pretrained
from rl_models.app.stream_agent import STREAM_AGENT_MODEL

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


TINY_TRAIN = ("--seconds", 2, "--tracks", 4, "--tracks-max", 5, "--episode-chunks", 40,
              "--batch-size", 2, "--max-updates", 2, "--minutes", 30)
"""A few BC updates on 2-second songs (the budget in minutes never binds)."""


@pytest.fixture(scope="module")
def tiny_agent(tmp_path_factory):
    """``deepmixing pretrained train`` at tiny sizes: (exported folder, work folder)."""
    from rl_models.app import cli

    root = tmp_path_factory.mktemp("retrain")
    out, work = root / "agent", root / "work"
    assert cli.main(["pretrained", "train", "--out", str(out), "--work", str(work),
                     *map(str, TINY_TRAIN)]) == 0
    return out, work


def test_the_recipe_is_the_learning_benchmarks_agent_on_a_stream_with_bus_references():
    from benchmarks.quality import QualitySetup

    recipe, setup = PretrainedRecipe(), QualitySetup()
    assert recipe.model == setup.model == STREAM_AGENT_MODEL
    env = recipe.train_env()
    assert {k: env[k] for k in setup.features()} == setup.features()
    assert env["listening_features"] is True and env["stem_loudness_feature"] is True
    stream = env["generated"]  # songs without end, never a fixed set on disk
    assert "dataset_dir" not in env and "synthetic" not in env
    assert 0.0 < stream["master_bus"] < 1.0  # some references through the bus, not all
    assert stream["style"] == "pop" and stream["seed"] == recipe.seed
    recipe.model["hidden_size"] = 1  # a recipe's model is its own copy
    assert STREAM_AGENT_MODEL["hidden_size"] != 1 and QualitySetup().model["hidden_size"] != 1


@pytest.mark.parametrize("override, match", [
    ({"minutes": 0}, "minutes must be > 0"),
    ({"max_updates": 0}, "max_updates must be an int >= 1"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"master_bus": 1.5}, "master_bus"),
    ({"style": "jazz"}, "jazz"),
], ids=["minutes", "max-updates", "batch", "bus", "style"])
def test_recipe_refuses_bad_settings(override, match):
    with pytest.raises(ConfigError, match=match):
        PretrainedRecipe(**override)


def test_the_retrain_command_remakes_and_exports_an_agent(tiny_agent):
    out, work = tiny_agent
    assert {p.name for p in out.iterdir()} == SHIPPED
    meta = json.loads((out / checkpoints.METADATA_FILE).read_text())
    assert meta["iteration"] == 2 and meta["experiment"]["algorithm"] == "BC"
    env = meta["experiment"]["env"]
    assert env["listening_features"] is True and env["stem_loudness_feature"] is True
    assert not {"dataset_dir", "generated", "synthetic"} & set(env)  # no training source
    assert meta["experiment"]["model"] == STREAM_AGENT_MODEL
    recipe = meta["experiment"]["recipe"]
    assert recipe["seconds"] == 2 and recipe["master_bus"] == PretrainedRecipe().master_bus
    assert json.loads((work / "recipe.json").read_text()) == recipe
    progress = json.loads((work / "run" / "progress.json").read_text())
    assert progress["updates"] == 2 and progress["songs"] >= 1  # the stream made new songs
    module, _ = checkpoints.load_policy(out)
    assert module.model_config["cross_track_attention"] is True
    # exporting again replaces the folder and keeps what else lies in it
    (out / "README.txt").write_text("mine")
    assert export_pretrained(work / "run", out) == out
    assert {p.name for p in out.iterdir()} == SHIPPED | {"README.txt"}


def test_the_transfer_benchmark_scores_each_kind_against_equal_gains(tiny_agent, tmp_path):
    from benchmarks import bench_transfer

    agent, _ = tiny_agent
    out = tmp_path / "transfer"
    assert bench_transfer.main(["--out", str(out), "--agent", str(agent), "--n-songs", "1",
                                "--seconds", "1.5", "--n-table", "2",
                                "--kinds", "natural_rock_bus", "procedural"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["results"]) == ["natural_rock_bus", "procedural"]
    for kind, result in results["results"].items():
        by = {r["policy"]: r for r in result["rows"]}
        assert result["rows"][0]["policy"] == "agent"
        assert by["equal"]["gap_closed"] == 0.0 and by["oracle"]["gap_closed"] == 1.0
        assert result["no_harm"] == (by["agent"]["mfcc_distance"] < by["equal"]["mfcc_distance"])
        assert ("bound" in by) == (kind != "procedural")  # no engineer mixed procedural songs
    song = next((out / "natural_rock_bus" / "songs").iterdir())
    made = json.loads((song / "sampled.json").read_text())
    assert made["recording_level"] == "natural" and made["engineer"]["style"] == "rock"
    assert made["master_bus"]  # every reference of the kind went through the bus
    assert (out / "procedural" / "songs" / "SynthSong001" / "synthetic.json").is_file()
    table = json.loads((out / "instrument_balance.json").read_text())
    seed = PretrainedRecipe().seed  # fitted on the agent's own training stream
    assert len(table["meta"]["songs"]) == 2
    assert all(name.startswith(f"Stream1-{seed}-") for name in table["meta"]["songs"])
    page = (out / "results.md").read_text()
    assert "| natural_rock_bus |" in page and "load average" in page


def test_no_harm_means_below_equal_gains():
    from benchmarks.bench_transfer import no_harm, summary_markdown

    rows = [{"policy": "agent", "mfcc_distance": 18.0, "gap_closed": 0.05},
            {"policy": "equal", "mfcc_distance": 19.0, "gap_closed": 0.0},
            {"policy": "loudness", "mfcc_distance": 17.0, "gap_closed": 0.1},
            {"policy": "oracle", "mfcc_distance": 0.0, "gap_closed": 1.0}]
    assert no_harm(rows)  # below equal gains, though loudness gains do better
    table = summary_markdown({"clean": {"rows": rows, "songs": 3, "songs_below_equal": 2}})
    assert "| clean | 18.00 / +0.05 | 19.00 / +0.00 | 17.00 / +0.10 | - | - |" in table
    assert table.rstrip().endswith("yes (2 of 3) |")
    rows[0]["mfcc_distance"] = 19.5
    assert not no_harm(rows)


def test_export_refuses_a_file_as_its_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        export_pretrained(checkpoints.PRETRAINED_DIR, target)
