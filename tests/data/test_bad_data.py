"""Damaged files and caches (issue 14): named, refused or rebuilt, never taken as good."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf
from _datafiles import SR, tone, write_cambridge_song

from mixing_env.data.audio_io import audio_info, read_audio, write_audio
from mixing_env.data.cache_reuse import npy_intact
from mixing_env.data.prepare import prepare_dataset
from mixing_env.errors import AudioFileError, CacheError


@pytest.fixture(params=[("wav", "PCM_24"), ("aiff", "PCM_16"), ("wav", "FLOAT")],
                ids=["wav24", "aiff16", "wav-float"])
def whole_and_cut(request, tmp_path):
    """A 0.5 s file and a copy cut in the middle of its samples."""
    ext, subtype = request.param
    whole = tmp_path / f"whole.{ext}"
    sf.write(whole, tone(SR // 2, 220), SR, subtype=subtype)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    return whole, cut


def test_a_file_cut_mid_data_is_named_truncated(whole_and_cut):
    whole, cut = whole_and_cut
    assert audio_info(whole).frames == SR // 2
    assert read_audio(whole, sample_rate=None).shape == (1, SR // 2)
    pattern = rf"{cut} is truncated: its header declares {SR // 2} frames, the file holds \d+"
    with pytest.raises(AudioFileError, match=pattern):
        audio_info(cut)
    with pytest.raises(AudioFileError, match=pattern):
        read_audio(cut)


def test_a_stream_wav_without_a_final_length_is_not_called_truncated(tmp_path):
    path = tmp_path / "stream.wav"
    sf.write(path, tone(4410, 220), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at: at + 4] = struct.pack("<I", 0xFFFFFFFF)  # what a recorder writes mid-stream
    path.write_bytes(bytes(data))
    assert audio_info(path).frames == 4410


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_audio_has_the_usual_file_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_audio(tmp_path / "x.wav", np.zeros(100), sample_rate=SR)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_npy_intact_tells_whole_from_truncated(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((3, 40), np.float32))
    assert npy_intact(path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 4)
    assert not npy_intact(path)
    path.write_bytes(b"garbage")
    assert not npy_intact(path)
    assert not npy_intact(tmp_path / "missing.npy")


def test_silent_reference_song_is_skipped_and_named(tmp_path):
    n = int(0.2 * SR)
    write_cambridge_song(tmp_path / "src" / "Loud", {"01_Kick": tone(n, 60)})
    write_cambridge_song(tmp_path / "src" / "Quiet", {"01_Kick": tone(n, 60)}, mix=np.zeros(n))
    ds = prepare_dataset(tmp_path / "src", tmp_path / "cache", progress=False)
    assert ds.names == ["Loud"]
    assert "Quiet_Mix.wav is silent" in ds.failed["Quiet"]
    assert ds.failed["Quiet"].startswith("song Quiet:")


def test_unreadable_manifest_is_refused_unless_rebuild(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    prepare_dataset(tiny_dataset, cache, progress=False)
    (cache / "manifest.json").write_text("{ not json")
    with pytest.raises(CacheError, match=r"unreadable manifest\.json; pass --rebuild"):
        prepare_dataset(tiny_dataset, cache, progress=False)
    ds = prepare_dataset(tiny_dataset, cache, progress=False, rebuild=True)
    assert ds.names == ["SongA", "SongB"]


def test_cache_under_a_file_is_refused(tiny_dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match=rf"cache folder {blocker / 'c'} cannot be made: "
                                         rf"{blocker} is a file"):
        prepare_dataset(tiny_dataset, blocker / "c", progress=False)
