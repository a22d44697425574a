"""``deepmixing mix pretrained`` on small songs: placement, loudness, project, automation."""

from __future__ import annotations

import csv
import gc
import json
import tracemalloc

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import soundfile as sf
from _mix_songs import SR, write_song

from rl_models.app import cli
from rl_models.app.mixdown.automation import gain_at
from rl_models.app.mixdown.loudness import TruePeakMeter
from rl_models.app.mixdown.panning import pan_gains
from rl_models.app.mixdown.reaper import master_gain_db, read_volume_envelopes


def mix(song, out, *args) -> int:
    return cli.main(["mix", "pretrained", str(song), "--out", str(out), "--no-progress",
                     *map(str, args)])


def outputs(out, song):
    meta = json.loads((out / f"{song.name}_automation.json").read_text())
    wav, sr = sf.read(out / f"{song.name}_mix.wav", always_2d=True)
    return meta, wav, sr


def true_peak_db(wav: np.ndarray) -> float:
    """4x oversampled peak, by scipy's polyphase resampler (independent of the project's)."""
    return 20 * np.log10(np.abs(scipy.signal.resample_poly(wav, 4, 1, axis=0)).max())


def full_gains(meta) -> dict[str, np.ndarray]:
    return {t["track"]: np.array(t["gain"]) for t in meta["tracks"]}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Eight stems, mono and stereo, mixed twice: thinned automation and every chunk's."""
    root = tmp_path_factory.mktemp("mixed")
    song, out, full = write_song(root / "MixedSong"), root / "out", root / "full"
    assert mix(song, out) == 0
    assert mix(song, full, "--full-automation") == 0
    return song, out, full


def test_a_song_of_mono_and_stereo_stems_reaches_the_loudness_under_the_true_peak(mixed):
    song, out, _ = mixed
    meta, wav, sr = outputs(out, song)
    assert wav.shape[1] == 2 and sr == SR
    lufs = pyloudnorm.Meter(sr).integrated_loudness(wav)
    assert lufs == pytest.approx(-14.0, abs=0.5)
    assert meta["loudness_lufs"] == pytest.approx(lufs, abs=0.01)  # the JSON tells the truth
    assert true_peak_db(wav) <= -1.0 + 0.02  # another 4x interpolator, a hair of leeway
    meter = TruePeakMeter(2)
    meter.add(wav.T)
    assert 20 * np.log10(meter.finish()) <= -1.0
    limiter = meta["limiter"]
    assert limiter["max_gain_reduction_db"] >= 0 and limiter["seconds_above_1db"] >= 0


def test_the_project_plays_every_stem_with_the_agents_gains(mixed):
    song, out, full = mixed
    meta = outputs(full, song)[0]
    tracks = read_volume_envelopes(out / f"{song.name}.rpp")
    assert sorted(tracks) == sorted(t["track"] for t in meta["tracks"])  # every stem
    assert len(tracks) == 8
    chunk_times = np.array(meta["tracks"][0]["time_s"])
    for name, gains in full_gains(meta).items():
        track = tracks[name]
        assert track["file"] == str((song / f"{name}.wav").resolve())
        drawn = gain_at(chunk_times, np.array(track["times"]), np.array(track["gains"]))
        np.testing.assert_array_less(np.abs(20 * np.log10(drawn / gains)), 0.1 + 1e-9)
        assert len(track["times"]) < len(chunk_times)  # thinned
    assert master_gain_db(out / f"{song.name}.rpp") == pytest.approx(
        meta["makeup_gain_db"], abs=1e-6)
    pans = {t["track"]: t["pan"] for t in meta["tracks"]}
    assert {k: tracks[k]["pan"] for k in tracks} == pytest.approx(pans)


def test_automation_files_keep_the_points_that_redraw_the_gains_within_a_tenth_of_a_db(mixed):
    song, out, full = mixed
    thinned, every = outputs(out, song)[0], outputs(full, song)[0]
    assert every["automation"]["points"] == "every chunk"
    gains = full_gains(every)
    chunk_times = np.array(every["tracks"][0]["time_s"])
    with (out / f"{song.name}_automation.csv").open() as f:
        rows = list(csv.DictReader(f))
    for track in thinned["tracks"]:
        mine = [r for r in rows if r["track"] == track["track"]]
        assert [float(r["time_s"]) for r in mine] == pytest.approx(track["time_s"], abs=1e-6)
        drawn = gain_at(chunk_times, np.array(track["time_s"]), np.array(track["gain"]))
        np.testing.assert_array_less(np.abs(20 * np.log10(drawn / gains[track["track"]])),
                                     0.1 + 1e-6)
    # A busy 2 s song moves at most chunks; the 3-minute benchmark shows the real saving.
    thin_points = sum(len(t["time_s"]) for t in thinned["tracks"])
    assert thin_points < sum(len(t["time_s"]) for t in every["tracks"])


def test_the_wav_is_the_stems_placed_times_their_gain_curves(mixed_song, tmp_path):
    """Mono stems by the constant-power law, stereo stems as they are, times the make-up."""
    out = tmp_path / "quiet"
    # -30 LUFS: far under the ceiling, so the limiter has nothing to do.
    assert mix(mixed_song, out, "--target-lufs", -30, "--full-automation") == 0
    meta, wav, sr = outputs(out, mixed_song)
    assert meta["limiter"]["max_gain_reduction_db"] == 0.0
    expected = np.zeros_like(wav)
    frame_times = np.arange(len(wav)) / sr
    for track in meta["tracks"]:
        y, _ = sf.read(track["file"], always_2d=True)
        g = gain_at(frame_times[: len(y)], np.array(track["time_s"]), np.array(track["gain"]))
        if track["channels"] == 1:
            left, right = pan_gains(track["pan"])
            expected[: len(y)] += (g * y[:, 0])[:, None] * [left, right]
        else:
            expected[: len(y)] += g[:, None] * y
    np.testing.assert_allclose(wav, meta["makeup_gain"] * expected, atol=2e-5)


def test_mono_stems_come_out_with_a_stereo_image(mono_song, tmp_path):
    out = tmp_path / "out"
    assert mix(mono_song, out) == 0
    meta, wav, _ = outputs(out, mono_song)
    pans = {t["track"]: t["pan"] for t in meta["tracks"]}
    assert pans["01_Kick"] == pans["06_Bass"] == pans["11_LeadVox"] == 0.0
    assert pans["07_ElecGtr1"] != 0.0  # a lone guitar plays off centre
    left, right = wav.T
    assert np.mean((left - right) ** 2) > 1e-3 * np.mean(left**2 + right**2)
    assert pyloudnorm.Meter(SR).integrated_loudness(wav) == pytest.approx(-14.0, abs=0.5)


def test_mono_keeps_a_mono_song_mono(mono_song, tmp_path):
    out = tmp_path / "out"
    assert mix(mono_song, out, "--mono") == 0
    meta, wav, _ = outputs(out, mono_song)
    assert wav.shape[1] == 1 and meta["placement"]["mode"] == "mono (no panning)"


def test_memory_does_not_grow_with_the_song(tmp_path, monkeypatch):
    """Tiny windows and blocks, so that 2 s and 12 s songs both span many of them."""
    import rl_models.app.mix as mix_module
    import rl_models.app.mixdown.render as render

    monkeypatch.setattr(mix_module, "WINDOW_CHUNKS", 16)
    monkeypatch.setattr(render, "BLOCK_FRAMES", 4096)
    stems = {"01_Kick.wav": (1, 0.9), "06_Bass.wav": (1, 0.3), "13_SynthPad.wav": (2, 0.1)}
    peaks = {}
    for seconds in (2.0, 12.0):
        song = write_song(tmp_path / f"Song{int(seconds)}", seconds=seconds, stems=stems)
        mix(song, tmp_path / f"warm{int(seconds)}")  # compiled kernels, loaded agent
        gc.collect()  # the last mix's garbage must not count in this one's peak
        tracemalloc.start()
        assert mix(song, tmp_path / f"out{int(seconds)}") == 0
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # Holding the song would cost at least the 10 s more of stems (4 channels of float32,
    # 7 MB); the streamed mix grows by the plot's and the automation's points (under 2 MB).
    extra_audio = 10 * 4 * 4 * SR
    assert peaks[12.0] - peaks[2.0] < 0.3 * extra_audio, peaks
