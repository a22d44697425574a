"""``deepmixing engineer``: the engineer mixes stems it did not make; the bound reproduces it."""

import json

import numpy as np
import pytest
import soundfile as sf

from mixing_env.data.prepare import prepare_dataset
from mixing_env.data.song_folder import load_true_gains
from mixing_env.engineer.folder import engineer_folder
from mixing_env.errors import AudioFileError
from rl_models.app.cli import main

K = 500


def _stems(folder, sr, *, stereo_guitar=False, seconds=2.0):
    """A small foreign multitrack: names a studio would use, mono and stereo files."""
    folder.mkdir(parents=True)
    n = int(seconds * sr)
    rng = np.random.default_rng(sr)
    t = np.arange(n) / sr
    kick = (np.sin(2 * np.pi * 55 * t) * (t % 0.5 < 0.1)).astype(np.float32) * 0.5
    bass = (0.2 * np.sin(2 * np.pi * 82 * t)).astype(np.float32)
    guitar = (0.05 * rng.standard_normal((n, 2) if stereo_guitar else n)).astype(np.float32)
    vox = (0.2 * np.sin(2 * np.pi * 440 * t) * (t > 0.3)).astype(np.float32)
    files = {"Kick In.wav": kick, "Bass DI.wav": bass, "Gtr L-R.wav": guitar, "Lead Vocal.wav": vox}
    for name, y in files.items():
        sf.write(folder / name, y, sr, subtype="FLOAT")
    return files


@pytest.mark.parametrize("sr,stereo", [(44100, False), (48000, True)], ids=["44k-mono",
                                                                           "48k-stereo"])
def test_the_mix_is_the_sum_of_the_gains_times_the_stems(tmp_path, sr, stereo):
    files = _stems(tmp_path / "src" / "Session", sr, stereo_guitar=stereo)
    (song,) = engineer_folder(tmp_path / "src", tmp_path / "out", style="rock",
                              inconsistency=1.0, seed=4)
    assert song.roles["Lead Vocal.wav"] == "lead" and song.roles["Kick In.wav"] == "kick"
    mix, rate = sf.read(song.folder / "Session_Mix.wav", dtype="float32")
    assert rate == sr and mix.ndim == 1
    gains = load_true_gains(song.folder / "true_gains.npz", list(files), chunk_size=K,
                            sample_rate=sr)
    expected = np.zeros(mix.size)
    for name, y in files.items():
        mono = y.mean(axis=1) if y.ndim == 2 else y
        assert (song.folder / name).exists()  # a link to (or copy of) the stem
        expected += np.repeat(gains[name], K)[: mix.size] * mono
    np.testing.assert_allclose(mix, expected, atol=1e-5)
    meta = json.loads((song.folder / "engineer.json").read_text())
    assert meta["engineer"]["style"] == "rock" and meta["engineer"]["seed"] == 4


def test_prepare_reads_the_engineers_songs_and_the_bound_is_its_rule(tmp_path):
    _stems(tmp_path / "src" / "SongA", 44100, seconds=3.0)
    engineer_folder(tmp_path / "src", tmp_path / "out", style="pop", inconsistency=0.0)
    prepare_dataset(tmp_path / "out", tmp_path / "cache", progress=False)
    from rl_models.app.evaluate import evaluate

    rows = evaluate(["bound", "equal", "oracle"], env_config={"dataset_dir": str(
        tmp_path / "cache")}, out_dir=tmp_path / "eval", plots=False, progress=False)
    bound = next(r for r in rows if r["policy"] == "bound" and r["song"] == "MEAN")
    # With no random part the engineer is exactly its own rule.
    assert bound["gap_closed"] == pytest.approx(1.0, abs=1e-4)
    assert bound["gain_err_median_db"] < 1e-3


def test_bad_style_empty_folder_and_unreadable_stem_get_one_error_line(tmp_path, capsys):
    _stems(tmp_path / "src" / "Song", 44100)
    assert main(["engineer", str(tmp_path / "src"), "--out", str(tmp_path / "o"),
                 "--style", "jazz"]) == 2
    assert "unknown engineer style 'jazz'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["engineer", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "is empty" in capsys.readouterr().err
    (tmp_path / "src" / "Song" / "Broken Snare.wav").write_bytes(b"RIFF not audio")
    assert main(["engineer", str(tmp_path / "src"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Broken Snare.wav" in err
    assert not (tmp_path / "o2" / "Song").exists()  # nothing written half
    with pytest.raises(AudioFileError, match="48000 Hz"):
        sf.write(tmp_path / "src" / "Song" / "Broken Snare.wav",
                 np.zeros(48000, np.float32), 48000)
        engineer_folder(tmp_path / "src", tmp_path / "o3", style="pop", inconsistency=1.0)
