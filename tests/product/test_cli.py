"""Every ``deepmixing`` command on tiny data: outputs exist, parse and hold the right values."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
import types

import numpy as np
import pytest
import soundfile as sf

from rl_models.app import cli

COMMANDS = ["synth", "prepare", "taxonomy", "train", "tune", "tune-report", "balance", "evaluate",
            "mix", "export-weights", "pretrained",
            "benchmark", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_works_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: deepmixing {command}")


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("argv, match", [
    (["train", "no_such_experiment"], "experiment file not found"),
    (["train", "quickstart", "--set", "bogus.lr=1"], "unknown top-level key 'bogus'"),
    (["train", "quickstart", "--set", "training.lr"], "KEY.PATH=VALUE"),
    (["prepare", "/no/such/folder", "/tmp/x"], "/no/such/folder"),
    (["evaluate", "not_a_baseline"], "neither a baseline"),
    (["mix", "/no/such/checkpoint", "/tmp"], "checkpoint not found"),
    (["taxonomy", "/no/such/folder"], "/no/such/folder"),
], ids=["experiment", "override-key", "override-form", "prepare-path", "evaluate-policy",
        "mix-checkpoint", "taxonomy-path"])
def test_user_mistakes_give_one_line_and_exit_2(argv, match, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("deepmixing: error: ") and match in err[0]
    assert "Traceback" not in err[0]


def test_debug_shows_the_traceback():
    from mixing_env.errors import ConfigError

    with pytest.raises(ConfigError, match="experiment file not found"):
        cli.main(["--debug", "train", "no_such_experiment"])


def test_synth_writes_song_folders(product_songs):
    songs = sorted(p for p in product_songs.iterdir() if p.is_dir())
    assert len(songs) == 2
    for song in songs:
        stems = [p for p in song.glob("*.wav") if "Mix" not in p.name]
        mixes = list(song.glob("*Mix*.wav"))
        assert len(stems) == 3 and len(mixes) == 1
        y, sr = sf.read(mixes[0])
        assert sr == 44100 and abs(len(y) - 44100) <= 500
        assert list(song.glob("true_gains.*"))


def test_prepare_writes_a_cache(product_cache):
    from mixing_env.data.cache import PreparedDataset

    manifest = json.loads((product_cache / "manifest.json").read_text())
    assert manifest
    ds = PreparedDataset(product_cache)
    assert len(ds) == 2
    song = ds.load(ds.names[0])
    assert song.stems.shape == (ds.n_slots, ds.n_chunks, 500)
    assert song.reference.shape == (ds.n_chunks, 500)
    assert song.track_mask.sum() == 3


def test_taxonomy_prints_each_stem(product_songs, capsys, deepmixing):
    assert deepmixing("taxonomy", product_songs) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["song", "stem"]
    body = lines[1:]
    assert len(body) == 6  # 2 songs x 3 stems
    kick = [ln for ln in body if "Kick" in ln]
    for ln in kick:
        assert "Drums/Kick" in ln and "Drums/Kick#1" in ln


def _trial_dir(experiment_dir):
    trials = [p for p in experiment_dir.iterdir() if p.is_dir() and (p / "progress.csv").exists()]
    assert len(trials) == 1, trials
    return trials[0]


def _progress(trial_dir):
    with (trial_dir / "progress.csv").open() as f:
        return list(csv.DictReader(f))


def test_train_writes_checkpoints_logs_and_custom_metrics(trained, product_cache):
    from mixing_env.data.cache import PreparedDataset

    trial = _trial_dir(trained)
    rows = _progress(trial)
    assert [int(r["training_iteration"]) for r in rows] == [1, 2]
    ckpts = sorted(trial.glob("checkpoint_*"))
    assert len(ckpts) == 2  # frequency 1 (the end one coincides with iteration 2)
    meta = json.loads((ckpts[-1] / "deepmixing.json").read_text())
    assert meta["chunk_size"] == 500 and meta["sample_rate"] == 44100
    assert len(meta["slot_names"]) == PreparedDataset(product_cache).n_slots
    policy = json.loads((ckpts[-1] / "policy.json").read_text())
    assert policy["layout"]["slot_names"] == meta["slot_names"]
    assert policy["module"] == meta["experiment"]["module"]
    assert (ckpts[-1] / "policy_weights.pt").stat().st_size > 0
    assert list(trial.glob("events.out.tfevents*")), "TensorBoard log missing"
    assert (trial / "learning_curve.png").stat().st_size > 0
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    custom = results[-1]["deepmixing"]
    assert np.isfinite(custom["mfcc_distance_mean"]) and custom["mfcc_distance_mean"] > 0
    assert 0 < custom["reward_mean"] <= 1
    assert custom["eval_iteration"] == 2
    # gap_closed is defined from the held-out distances it reports
    expected = (custom["eval_d_equal"] - custom["eval_mfcc_distance"]) / (
        custom["eval_d_equal"] - custom["eval_d_oracle"])
    assert custom["gap_closed"] == pytest.approx(expected)


def test_evaluate_checkpoint_and_baselines(trained, product_cache, tmp_path, capsys, deepmixing):
    from mixing_env import metrics
    from mixing_env.baselines import EqualGains
    from mixing_env.data.cache import PreparedDataset
    from mixing_env.reward import evaluate_gains

    out = tmp_path / "eval"
    assert deepmixing("evaluate", trained, "equal", "oracle", "--dataset", product_cache,
                   "--out", out, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "gap_closed" in printed and "MEAN" in printed
    table = json.loads((out / "evaluation.json").read_text())
    rows = table["rows"]
    assert len(rows) == 3 * (2 + 1)
    with (out / "evaluation.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert {r["policy"] for r in rows if r["song"] == "MEAN"} >= {"equal", "oracle"}
    assert len(list((out / "plots").glob("*__gains.png"))) == 3 * 2
    assert len(list((out / "plots").glob("*__mfcc_distance.png"))) == 2

    # The equal-gain row equals a direct computation with the shared reward code.
    ds = PreparedDataset(product_cache)
    song = ds.load(ds.names[0], mmap=False)
    gains = EqualGains().gains(song)
    direct = evaluate_gains(song, gains)
    row = next(r for r in rows if r["policy"] == "equal" and r["song"] == song.name)
    assert row["mfcc_distance"] == pytest.approx(direct["distances"].mean(), rel=1e-4)
    assert row["reward"] == pytest.approx(direct["rewards"].mean(), rel=1e-4)
    n = direct["distances"].shape[0]
    mix = np.einsum("ct,ctn->tn", gains[:, :n], song.stems[:, :n].astype(np.float64)).ravel()
    ref = song.reference[:n].astype(np.float64).ravel()
    mix = mix * (mix @ ref) / (mix @ mix)
    r0, e0 = ref - ref.mean(), mix - mix.mean()
    target = (e0 @ r0) / (r0 @ r0) * r0
    si_sdr = 10 * np.log10((target @ target) / ((e0 - target) @ (e0 - target)))
    assert row["si_sdr_db"] == pytest.approx(si_sdr, abs=1e-4)
    active = metrics.active_chunks(song.stems[:, :n], track_mask=song.track_mask)
    err = metrics.gain_error_db(estimated=gains[:, :n], true=song.true_gains[:, :n],
                                track_mask=song.track_mask, active=active)
    assert row["gain_err_median_db"] == pytest.approx(err["median_db"], abs=1e-6)
    oracle = next(r for r in rows if r["policy"] == "oracle" and r["song"] == "MEAN")
    equal = next(r for r in rows if r["policy"] == "equal" and r["song"] == "MEAN")
    assert oracle["mfcc_distance"] < equal["mfcc_distance"]
    assert oracle["gap_closed"] == pytest.approx(1.0) and equal["gap_closed"] == pytest.approx(0)


def test_evaluate_baseline_on_synthetic_songs(tmp_path, deepmixing):
    out = tmp_path / "eval"
    assert deepmixing("evaluate", "loudness", "--synthetic", 1, "--seconds", 0.5, "--tracks", 2,
                   "--out", out, "--no-plots", "--no-progress") == 0
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert [r["song"] for r in rows][-1] == "MEAN" and len(rows) == 2
    assert rows[0]["mfcc_distance"] == pytest.approx(rows[1]["mfcc_distance"])


@pytest.mark.parametrize("with_mix_file", [True, False], ids=["with-mix", "stems-only"])
def test_mix_wav_is_the_stems_times_the_automation(trained, product_songs, tmp_path,
                                                   with_mix_file, deepmixing):
    song_dir = sorted(p for p in product_songs.iterdir() if p.is_dir())[0]
    if not with_mix_file:
        copy = tmp_path / song_dir.name
        shutil.copytree(song_dir, copy)
        for p in copy.glob("*Mix*"):
            p.unlink()
        song_dir = copy
    out = tmp_path / "mix"
    # --mono: the stems unplaced; -40 LUFS: the limiter has nothing to do; every chunk.
    assert deepmixing("mix", trained, song_dir, "--out", out, "--no-progress", "--mono",
                      "--target-lufs", "-40", "--full-automation") == 0
    meta = json.loads((out / f"{song_dir.name}_automation.json").read_text())
    wav, sr = sf.read(out / f"{song_dir.name}_mix.wav", always_2d=True)
    assert sr == meta["source_sample_rate"] == 44100 and wav.shape[1] == 1
    assert (out / f"{song_dir.name}_automation.png").stat().st_size > 0
    assert (out / f"{song_dir.name}.rpp").stat().st_size > 0
    with (out / f"{song_dir.name}_automation.csv").open() as f:
        rows = list(csv.DictReader(f))
    tracks = [t["track"] for t in meta["tracks"]]
    assert len(tracks) == 3 and len(rows) == 3 * meta["n_chunks"]
    gains = {t: np.array([float(r["gain"]) for r in rows if r["track"] == t]) for t in tracks}
    # simplex: the gains of every chunk sum to 1 over the tracks
    np.testing.assert_allclose(sum(gains.values()), 1.0, atol=1e-5)
    times = np.array(meta["tracks"][0]["time_s"])
    expected = np.zeros(wav.shape[0])
    for t in meta["tracks"]:
        y, _ = sf.read(t["file"], always_2d=True)
        curve = np.interp(np.arange(len(y)) / sr, times, gains[t["track"]])
        expected[: len(y)] += y.mean(axis=1) * curve
    np.testing.assert_allclose(wav[:, 0], meta["makeup_gain"] * expected, atol=1e-5)
    assert meta["limiter"]["max_gain_reduction_db"] == 0.0


def test_tune_runs_a_grid(product_cache, ray_session, tmp_path, deepmixing, tiny_sets):
    from mixing_env.data.cache import PreparedDataset

    name = PreparedDataset(product_cache).names[0]
    assert deepmixing(
        "tune", "sweep_asha", "--storage-path", tmp_path, "--name", "grid", "--verbose", 0,
        "--set", f"env.dataset_dir={product_cache}", "--set", f"env.songs=[{name}]",
        "--set", "tune.param_space={training: {lr: {grid_search: [0.001, 0.0001]}}}",
        "--set", "tune.num_samples=1", "--set", "tune.scheduler=null",
        "--set", "stop.training_iteration=1", "--set", "evaluation.interval=0",
        *tiny_sets,
    ) == 0
    trials = [p for p in (tmp_path / "grid").iterdir() if (p / "progress.csv").exists()]
    assert len(trials) == 2
    lrs = sorted(json.loads((t / "params.json").read_text())["training"]["lr"] for t in trials)
    assert lrs == [0.0001, 0.001]
    for t in trials:
        assert list(t.glob("checkpoint_*/deepmixing.json"))


def test_benchmark_calls_the_benchmark_function_with_the_arguments(monkeypatch):
    seen = []
    fake = types.ModuleType("benchmarks.bench_env")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "benchmarks.bench_env", fake)
    assert cli.main(["benchmark", "env", "--", "--sizes", "8", "--quick"]) == 0
    assert seen == [["--sizes", "8", "--quick"]]


def test_benchmark_quality_help_comes_from_its_module(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["benchmark", "quality", "--", "--help"])
    assert exc.value.code == 0
    assert "--tiny" in capsys.readouterr().out


def test_demo_runs_the_whole_job(ray_session, tmp_path, capsys, deepmixing, tiny_sets):
    out = tmp_path / "demo"
    assert deepmixing("demo", "--out", out, "--n-songs", 2, "--seconds", 2,
                      "--bc-updates", 30, "--iterations", 1, "--no-progress", *tiny_sets,
                      "--set", "evaluation.interval=1",
                      "--set", "env.generated.n_tracks=[4, 5]") == 0
    printed = capsys.readouterr().out
    for label in ("held-out songs:", "prepared cache:", "checkpoint:", "evaluation:",
                  "mix wav:"):
        assert label in printed
    assert re.search(r"the agent closes -?\d+% of the gap .*instrument_balance closes -?\d+%.*"
                     r"bound\) -?\d+%", printed)
    assert (out / "cache" / "manifest.json").is_file()
    rows = json.loads((out / "evaluation" / "evaluation.json").read_text())["rows"]
    assert {r["policy"] for r in rows} >= {"equal", "loudness", "instrument_balance", "bound",
                                           "oracle"}
    assert len(list((out / "mix").glob("*_mix.wav"))) == 1
    (trial,) = [p for p in (out / "runs" / "demo").iterdir() if (p / "result.json").is_file()]
    assert (trial / "learning_curve.png").stat().st_size > 0
    assert json.loads((trial / "params.json").read_text())["init_module_from"].endswith(
        "checkpoint_000000")  # PPO started from the behaviour-cloned policy
    agent = [r for r in rows if r["song"] == "MEAN" and "checkpoint_" in r["policy"]]
    assert len(agent) == 1 and np.isfinite(agent[0]["mfcc_distance"])
    # The clone is a fixed number of updates, and PPO keeps its loss (DAPG).
    assert json.loads((out / "runs" / "bc" / "progress.json").read_text())["updates"] == 30
    params = json.loads((trial / "params.json").read_text())
    assert params["resources"]["learner_config_dict"]["demonstrations"]["coeff"] == 10.0
    assert "keeping the clone's loss at weight 10" in printed


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"bc_updates": 0}, "bc_updates must be an int >= 1"),
    ({"bc_updates": 2.5}, "bc_updates must be an int >= 1"),
    ({"imitation": -1.0}, "imitation must be a number >= 0"),
    ({"bc_minutes": 0}, "bc_minutes must be > 0"),
])
def test_demo_names_a_bad_setting_before_it_writes_anything(tmp_path, kwargs, match):
    from mixing_env.errors import ConfigError
    from rl_models.app.demo import run_demo

    with pytest.raises(ConfigError, match=match):
        run_demo(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()
