import numpy as np
import pytest
import soundfile as sf
from _datafiles import SR, tone

from mixing_env.data.audio_io import audio_info, read_audio, write_audio
from mixing_env.errors import AudioFileError

FORMATS = [
    (".wav", "PCM_16"),
    (".wav", "PCM_24"),
    (".wav", "PCM_32"),
    (".wav", "FLOAT"),
    (".flac", "PCM_16"),
    (".flac", "PCM_24"),
    (".aiff", "PCM_16"),
    (".aif", "PCM_24"),
    (".aiff", "PCM_32"),
]


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize(("ext", "subtype"), FORMATS, ids=[f"{e[1:]}-{s}" for e, s in FORMATS])
def test_read_formats_depths_channels(tmp_path, ext, subtype, channels):
    y = tone(2000, 440, channels=channels)
    path = tmp_path / f"x{ext}"
    sf.write(path, y, SR, subtype=subtype, format="AIFF" if ext.startswith(".aif") else None)
    out = read_audio(path, sample_rate=SR, mono=True)
    assert out.dtype == np.float32 and out.shape == (1, 2000)
    expected = y if channels == 1 else y.mean(axis=1)
    tol = 1e-4 if subtype == "PCM_16" else 1e-6
    np.testing.assert_allclose(out[0], expected, atol=tol)
    kept = read_audio(path, sample_rate=SR, mono=False)
    assert kept.shape == (channels, 2000)


def test_resamples_with_soxr(tmp_path):
    sr_in = 48000
    y = tone(sr_in // 10, 1000, sr=sr_in)
    sf.write(tmp_path / "x.wav", y, sr_in, subtype="FLOAT")
    out = read_audio(tmp_path / "x.wav", sample_rate=SR)
    assert out.shape == (1, SR // 10)
    # The 1 kHz tone survives resampling: compare away from the filter's edge effects.
    ref = tone(SR // 10, 1000)
    np.testing.assert_allclose(out[0, 200:-200], ref[200:-200], atol=2e-3)
    assert audio_info(tmp_path / "x.wav").sample_rate == sr_in


def test_missing_file_named(tmp_path):
    with pytest.raises(AudioFileError, match=r"not found: .*nope\.wav"):
        read_audio(tmp_path / "nope.wav")


def test_corrupt_file_named(tmp_path):
    bad = tmp_path / "03_Snare.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    with pytest.raises(AudioFileError, match=r"03_Snare\.wav"):
        read_audio(bad)
    with pytest.raises(AudioFileError, match=r"03_Snare\.wav"):
        audio_info(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples_rejected(tmp_path, value):
    y = tone(1000, 200).astype(np.float32)
    y[123] = value
    sf.write(tmp_path / "bad.wav", y, SR, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"bad\.wav holds 1 NaN or inf .*sample 123"):
        read_audio(tmp_path / "bad.wav")


def test_write_audio_atomic_and_roundtrip(tmp_path, monkeypatch):
    y = tone(1000, 300, channels=2).T.astype(np.float32)
    path = write_audio(tmp_path / "out.flac", y, sample_rate=SR, subtype="PCM_24")
    assert read_audio(path, sample_rate=SR, mono=False).shape == (2, 1000)

    # A write that dies midway leaves the old file and no temporary behind.
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        write_audio(path, np.zeros(10), sample_rate=SR)
    assert read_audio(path, sample_rate=SR, mono=False).shape == (2, 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]


def test_write_audio_rejects_unknown_ending(tmp_path):
    with pytest.raises(AudioFileError, match=r"\.mp4"):
        write_audio(tmp_path / "x.mp4", np.zeros(10), sample_rate=SR)
