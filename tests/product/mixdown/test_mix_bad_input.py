"""What a mix does with odd stems: one warning naming the file, or one error and no files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from _mix_songs import SR, write_song

from rl_models.app import cli

STEMS = {"01_Kick.wav": (1, 0.9), "06_Bass.wav": (1, 0.3), "13_SynthPad.wav": (2, 0.1)}


def mix(song, out, *args) -> int:
    return cli.main(["mix", "pretrained", str(song), "--out", str(out), "--no-progress",
                     *map(str, args)])


def warnings_in(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("deepmixing: warning:")]


@pytest.fixture
def song(tmp_path):
    return write_song(tmp_path / "Odd", seconds=1.5, stems=STEMS)


@pytest.mark.parametrize("factor, word", [(0.5, "shorter"), (2.0, "longer")])
def test_a_stem_of_another_length_is_named_and_the_mix_runs_to_the_longest(
        song, tmp_path, capsys, factor, word):
    odd = song / "06_Bass.wav"
    y, _ = sf.read(odd)
    sf.write(odd, np.resize(y, int(len(y) * factor)), SR, subtype="FLOAT")
    assert mix(song, tmp_path / "out") == 0
    warned = warnings_in(capsys)
    assert any(str(odd) in w and f"{word} than the others" in w for w in warned), warned
    wav, _ = sf.read(tmp_path / "out" / "Odd_mix.wav")
    assert len(wav) == int(1.5 * SR * max(factor, 1.0))


def test_a_stem_at_another_sample_rate_is_named_and_resampled(song, tmp_path, capsys):
    other = song / "06_Bass.wav"
    t = np.arange(int(1.5 * 48000)) / 48000
    sf.write(other, 0.3 * np.sin(2 * np.pi * 110 * t), 48000, subtype="FLOAT")
    assert mix(song, tmp_path / "out") == 0
    warned = warnings_in(capsys)
    assert any(str(other) in w and "48000 Hz" in w and "resampled" in w for w in warned)
    info = sf.info(tmp_path / "out" / "Odd_mix.wav")
    assert info.samplerate == SR and abs(info.frames - int(1.5 * SR)) <= 1


def test_a_silent_stem_is_named(song, tmp_path, capsys):
    silent = song / "01_Kick.wav"
    sf.write(silent, np.zeros(int(1.5 * SR)), SR, subtype="FLOAT")
    assert mix(song, tmp_path / "out") == 0
    assert any(str(silent) in w and "silent" in w for w in warnings_in(capsys))


def test_a_six_channel_stem_is_refused_before_anything_is_written(song, tmp_path, capsys):
    surround = song / "20_Ambience.wav"
    sf.write(surround, np.zeros((SR, 6), np.float32), SR, subtype="FLOAT")
    out = tmp_path / "out"
    assert mix(song, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepmixing: error: "), err
    assert str(surround) in err[0] and "6 channels" in err[0]
    assert not out.exists()


def test_a_failure_while_mixing_leaves_no_file_half_written(song, tmp_path, monkeypatch):
    import rl_models.app.mixdown.master as master

    def broken(*args, **kwargs):
        raise OSError("disk full")

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    monkeypatch.setattr(master, "master", broken)
    with pytest.raises(OSError, match="disk full"):
        cli.main(["--debug", "mix", "pretrained", str(song), "--out", str(out),
                  "--no-progress"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # no temporary file left


def test_peak_only_brings_the_true_peak_to_the_limit_without_the_limiter(song, tmp_path):
    out = tmp_path / "out"
    assert mix(song, out, "--peak-only", "--true-peak", -3) == 0
    meta = json.loads((out / "Odd_automation.json").read_text())
    assert meta["limiter"] is None and meta["target_lufs"] is None
    assert meta["true_peak_dbtp"] == pytest.approx(-3.0, abs=0.01)


def test_a_song_at_48_khz_is_mixed_at_48_khz(tmp_path):
    song = write_song(tmp_path / "Song48", seconds=1.5, stems=STEMS, sample_rate=48000)
    out = tmp_path / "out"
    assert mix(song, out) == 0  # the agent hears it at 44.1 kHz, the WAV keeps 48 kHz
    wav, sr = sf.read(out / "Song48_mix.wav", always_2d=True)
    meta = json.loads((out / "Song48_automation.json").read_text())
    assert sr == meta["source_sample_rate"] == 48000 and meta["env_sample_rate"] == 44100
    assert len(wav) == int(1.5 * 48000) and wav.shape[1] == 2
    assert meta["loudness_lufs"] == pytest.approx(-14.0, abs=0.5)
