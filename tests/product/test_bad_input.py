"""What a new user hits (issue 14), met where the user meets it: the ``deepmixing`` command.

Every mistake ends in one ``deepmixing: error:`` line and exit status 2 before any long work;
nothing prepared or written before is lost or silently replaced.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rl_models.app import cli


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def one_error(capsys, *needles: str) -> str:
    """The one stderr line, checked to be ``deepmixing: error: ...`` holding every needle."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("deepmixing: error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


@pytest.fixture
def songs(product_songs, tmp_path):
    """A private copy of the two synthetic songs (1 s, 3 tracks), free to damage."""
    out = tmp_path / "songs"
    shutil.copytree(product_songs, out)
    return out


def song_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def mix_file(song: Path) -> Path:
    return next(song.glob("*Mix*.wav"))


# ---------------------------------------------------------------------------- 1: mix levels
@pytest.mark.parametrize("option, value", [
    ("--target-lufs", "nan"), ("--target-lufs", "-200"), ("--target-lufs", "50"),
    ("--target-lufs", "inf"), ("--true-peak", "20"), ("--true-peak", "nan"),
], ids=["lufs-nan", "lufs-200", "lufs+50", "lufs-inf", "peak+20", "peak-nan"])
def test_mix_refuses_levels_before_loading_the_checkpoint(option, value, songs, capsys):
    # The checkpoint does not exist: the level must be refused before it is looked for.
    assert run("mix", "/no/such/checkpoint", song_dirs(songs)[0], option, value) == 2
    one_error(capsys, option, value, "-70 to 0")


def test_mix_reports_an_unreachable_target_and_records_the_loudness_reached(
        trained, songs, tmp_path, capsys):
    import pyloudnorm

    song = song_dirs(songs)[0]
    out = tmp_path / "mix"
    old_umask = os.umask(0o022)
    try:
        # -1 LUFS under a -20 dBTP true peak cannot be reached; the progress bars are on.
        assert run("mix", trained, song, "--out", out, "--target-lufs", "-1",
                   "--true-peak", "-20") == 0
    finally:
        os.umask(old_umask)
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("deepmixing: warning:")]
    assert any("loudness target -1 LUFS not reached" in w and "-20 dBTP" in w for w in warning)
    assert "warnings.warn" not in err and "stacklevel" not in err  # no source lines

    def no_nan(word):
        raise AssertionError(f"JSON holds {word}")

    meta = json.loads((out / f"{song.name}_automation.json").read_text(),
                      parse_constant=no_nan)
    wav_path = out / f"{song.name}_mix.wav"
    wav, sr = sf.read(wav_path, always_2d=True)
    reached = pyloudnorm.Meter(sr).integrated_loudness(wav)
    assert meta["target_lufs"] == -1
    assert meta["loudness_lufs"] == pytest.approx(reached, abs=0.05)
    assert meta["loudness_lufs"] < -1 - 1.0
    assert np.max(np.abs(wav)) <= 10 ** (-20 / 20) + 1e-6
    # 12: the WAV is readable by all, like the CSV, JSON, PNG and project beside it.
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert sorted(p.suffix for p in out.iterdir()) == [".csv", ".json", ".png", ".rpp", ".wav"]
    # 13: a bar per pass, each run to its end: the agent's one counts the chunks.
    bars = dict(re.findall(r": ([a-z ]+): +100%\|[^|]*\| (\d+)/\d+", err))
    assert int(bars["agent"]) == meta["n_chunks"], err[-800:]
    assert {"rendering", "agent"} <= set(bars)


# -------------------------------------------------------------------- 2: silent reference
def test_prepare_skips_a_song_with_a_silent_reference(songs, tmp_path, capsys):
    silent = song_dirs(songs)[1]
    info = sf.info(mix_file(silent))
    sf.write(mix_file(silent), np.zeros(info.frames), info.samplerate)
    cache = tmp_path / "cache"
    assert run("prepare", songs, cache, "--no-progress") == 0
    out = capsys.readouterr().out
    assert "prepared 1 song(s)" in out and "skipped 1" in out
    assert re.search(rf"skipped {silent.name}: .*reference mix .* is silent", out), out
    assert silent.name not in json.loads((cache / "manifest.json").read_text())["songs"]


def test_evaluate_leaves_a_silent_reference_out_of_the_scores(songs, tmp_path, capsys):
    from mixing_env.data.cache import song_dir

    cache = tmp_path / "cache"
    assert run("prepare", songs, cache, "--no-progress") == 0
    names = [p.name for p in song_dirs(songs)]
    # A cache from before prepare refused silent references.
    ref = song_dir(cache, names[1]) / "reference.npy"
    np.save(ref, np.zeros_like(np.load(ref)))
    capsys.readouterr()
    out = tmp_path / "eval"
    assert run("evaluate", "equal", "--dataset", cache, "--out", out, "--no-plots",
               "--no-progress") == 0
    err = capsys.readouterr().err
    assert f"deepmixing: warning: song '{names[1]}': its reference mix is silent" in err
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert [r["song"] for r in rows] == [names[0], "MEAN"]
    assert rows[1]["mfcc_distance"] == pytest.approx(rows[0]["mfcc_distance"])


# ------------------------------------------------------------------- 3: an existing cache
def _prepared_at(cache: Path) -> dict:
    songs = json.loads((cache / "manifest.json").read_text())["songs"]
    return {k: v["prepared_at"] for k, v in songs.items()}


def test_prepare_refuses_other_options_into_a_cache_unless_rebuild(songs, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert run("prepare", songs, cache, "--no-progress") == 0
    before = _prepared_at(cache)
    capsys.readouterr()
    assert run("prepare", songs, cache, "--n-chunks", 10, "--no-progress") == 2
    one_error(capsys, str(cache), "n_chunks=", "(now 10)", "--rebuild")
    assert _prepared_at(cache) == before  # nothing replaced
    assert run("prepare", songs, cache, "--n-chunks", 10, "--rebuild", "--no-progress") == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["n_chunks"] == 10 and set(manifest["songs"]) == set(before)


def test_prepare_refuses_another_dataset_into_a_cache_unless_rebuild(songs, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = song_dirs(songs)
    assert run("prepare", songs, cache, "--no-progress") == 0
    other = tmp_path / "other"
    assert run("synth", other, "--kind", "procedural", "--n-songs", 1, "--seconds", 1,
               "--tracks", 3, "--seed", 9) == 0
    (other / "SynthSong001").rename(other / "Other")
    capsys.readouterr()
    assert run("prepare", other, cache, "--no-progress") == 2
    one_error(capsys, "2 song(s)", f"dataset {songs.resolve()}", "--rebuild")
    assert set(_prepared_at(cache)) == {p.name for p in first}
    assert run("prepare", other, cache, "--rebuild", "--no-progress") == 0
    assert set(_prepared_at(cache)) == {"Other"}
    # The replaced songs' folders go too: nothing is left that no manifest lists.
    assert sorted(p.name for p in (cache / "songs").iterdir()) == ["Other"]


def test_prepare_rebuilds_a_truncated_stems_file(songs, tmp_path, capsys):
    from mixing_env.data.cache import PreparedDataset, song_dir

    cache = tmp_path / "cache"
    assert run("prepare", songs, cache, "--no-progress") == 0
    name = song_dirs(songs)[0].name
    good = np.array(PreparedDataset(cache).load(name).stems)
    stems = song_dir(cache, name) / "stems.npy"
    size = stems.stat().st_size
    with stems.open("r+b") as f:
        f.truncate(size // 2)
    capsys.readouterr()
    assert run("evaluate", "equal", "--dataset", cache, "--out", tmp_path / "e",
               "--no-progress", "--no-plots") == 2
    one_error(capsys, str(stems), "deepmixing prepare")
    assert run("prepare", songs, cache, "--no-progress") == 0
    assert stems.stat().st_size == size
    np.testing.assert_array_equal(PreparedDataset(cache).load(name).stems, good)


# --------------------------------------------------------------------- 4: a truncated WAV
def test_prepare_names_a_wav_cut_mid_data_as_truncated(songs, tmp_path, capsys):
    song = song_dirs(songs)[0]
    stem = sorted(p for p in song.glob("*.wav") if "Mix" not in p.name)[0]
    data = stem.read_bytes()
    stem.write_bytes(data[: len(data) // 2])
    assert run("prepare", songs, tmp_path / "cache", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "skipped 1" in out
    assert re.search(rf"skipped {song.name}: audio file {re.escape(str(stem))} is truncated: "
                     r"its header declares \d+ frames, the file holds \d+", out), out


# ------------------------------------------------------------ 6: paths and values refused
def test_prepare_refuses_a_cache_path_that_is_a_file(songs, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    assert run("prepare", songs, cache, "--no-progress") == 2
    one_error(capsys, f"cache folder {cache} cannot be made", "is a file")
    assert cache.read_text() == "not a folder"


def test_mix_refuses_an_out_that_is_a_file_before_mixing(songs, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine")
    # The checkpoint does not exist: --out must be refused before it is looked for.
    assert run("mix", "/no/such/checkpoint", song_dirs(songs)[0], "--out", out / "sub") == 2
    one_error(capsys, "--out folder", f"{out} is a file")


@pytest.mark.parametrize("option", ["--sample-rate", "--n-songs"])
def test_synth_refuses_a_zero(option, tmp_path, capsys):
    assert run("synth", tmp_path / "s", option, 0) == 2
    one_error(capsys, option.strip("-").replace("-", "_"), "got 0")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------- 9: messages and folders
def test_incomplete_cache_points_at_the_command(songs, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert run("prepare", songs, cache, "--no-progress") == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    (cache / "manifest.json").write_text(json.dumps(dict(manifest, complete=False)))
    capsys.readouterr()
    assert run("evaluate", "equal", "--dataset", cache, "--out", tmp_path / "e") == 2
    line = one_error(capsys, "incomplete", "deepmixing prepare")
    assert "prepare_dataset" not in line


@pytest.mark.parametrize("policy", ["not_a_baseline", "/no/such/checkpoint"])
def test_evaluate_that_fails_leaves_no_out_folder(policy, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run("evaluate", policy, "--out", out) == 2
    one_error(capsys)
    assert not out.exists()


def test_evaluate_refuses_an_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("mine")
    assert run("evaluate", "equal", "--synthetic", 1, "--out", out) == 2
    one_error(capsys, f"{out} is a file")
    assert out.read_text() == "mine"


def test_taxonomy_shows_a_stems_only_folder_and_a_song_without_mix(songs, capsys):
    lacking, whole = song_dirs(songs)
    mix_file(lacking).unlink()
    assert run("taxonomy", lacking) == 0  # a stems-only folder: a valid mix input
    out = capsys.readouterr().out
    assert sum(line.startswith(lacking.name) for line in out.splitlines()) == 3
    assert run("taxonomy", songs) == 0  # one song lacks a mix: the dataset still shows
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert {line.split()[0] for line in lines[1:]} == {lacking.name, whole.name}
    assert f"no mix found in {lacking}" in captured.err and "prepare skips it" in captured.err


# --------------------------------------------------------------------------- 13: the CLI
def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        run("--version")
    assert exc.value.code == 0
    assert re.fullmatch(r"deepmixing \S+.*", capsys.readouterr().out.strip())


def test_every_option_has_help_text():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in sub.choices.items()
        for action in command._actions
        if not action.help and action.dest != "help"
    ]
    assert not missing, missing


@pytest.mark.parametrize("command", ["mix", "evaluate"])
def test_checkpoint_commands_say_they_unpickle_nothing(command, capsys):
    with pytest.raises(SystemExit):
        run(command, "--help")
    assert "nothing is unpickled" in " ".join(capsys.readouterr().out.split())


def test_prepare_warnings_are_one_line_without_source(songs, tmp_path, capsys):
    song = song_dirs(songs)[0]
    stem = sorted(p for p in song.glob("*.wav") if "Mix" not in p.name)[0]
    info = sf.info(stem)
    sf.write(stem, np.zeros(info.frames), info.samplerate, subtype=info.subtype)
    assert run("prepare", songs, tmp_path / "cache", "--no-progress") == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("deepmixing: warning: stem ") and "is silent" in line
               for line in err), err
    assert not [line for line in err if "write_song(" in line or "warnings.warn" in line]
