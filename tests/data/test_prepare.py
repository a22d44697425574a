import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
from _datafiles import SR, tone, write_cambridge_song

from mixing_env.constants import CACHE_FORMAT_VERSION
from mixing_env.data.audio_io import DataWarning
from mixing_env.data.cache import PreparedDataset
from mixing_env.data.prepare import prepare_dataset
from mixing_env.errors import AudioFileError, CacheError, ConfigError, DatasetError

K = 500
LAYOUT = [
    "Drums/Kick#1",
    "Strings/Electric#1",
    "Strings/Electric#2",
    "Strings/Bass#1",
    "Vocals/Lead#1",
]


def prep(src, cache, **kw):
    """prepare_dataset, quiet, in the compact layout (these tests check padding and slots)."""
    kw.setdefault("progress", False)
    kw.setdefault("layout", "compact")
    return prepare_dataset(src, cache, **kw)


def test_slots_dummies_padding_and_chunks(tiny_dataset, tmp_path):
    ds = prep(tiny_dataset, tmp_path / "cache")
    T = int(np.ceil(0.30 * SR / K))
    assert ds.slot_names == LAYOUT and ds.n_slots == 5
    assert (ds.n_chunks, ds.chunk_size, ds.sample_rate, len(ds)) == (T, K, SR, 2)
    a, b = ds.load("SongA"), ds.load("SongB")
    assert (
        a.stems.shape == (5, T, K) and a.reference.shape == (T, K) and a.stems.dtype == np.float32
    )
    np.testing.assert_array_equal(a.track_mask, [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(b.track_mask, [1, 1, 1, 0, 1])
    assert not np.any(a.stems[1:3]) and not np.any(b.stems[3])  # dummy slots are zeros
    n_b = int(0.25 * SR)
    flat = np.asarray(b.stems).reshape(5, -1)
    np.testing.assert_allclose(flat[1, :n_b], tone(n_b, 220), atol=1e-4)  # 16-bit PCM
    assert not np.any(flat[:, n_b:]) and not np.any(np.asarray(b.reference).ravel()[n_b:])
    assert b.n_valid_chunks == int(np.ceil(n_b / K))
    assert isinstance(a.stems, np.memmap)
    assert ds.manifest["songs"]["SongB"]["stem_to_slot"]["06_ElecGtr2.wav"] == "Strings/Electric#2"
    assert a.stem_files["Vocals/Lead#1"].endswith("03_LeadVox.wav")


def test_tuple_iterator_is_the_report_tuple(tiny_dataset, tmp_path):
    ds = prep(tiny_dataset, tmp_path / "cache")
    tuples = list(ds.tuples())
    assert len(tuples) == 2
    for (stems, mix), name in zip(tuples, ds.names, strict=True):
        assert stems.shape == (ds.n_slots, ds.n_chunks, K) and mix.shape == (ds.n_chunks, K)
        np.testing.assert_array_equal(stems, ds.load(name, mmap=False).stems)


def test_set_length_trims_longer_songs(tiny_dataset, tmp_path):
    with pytest.warns(DataWarning) as record:
        ds = prep(tiny_dataset, tmp_path / "cache", n_chunks=10)
    messages = " | ".join(str(w.message) for w in record)
    assert "SongA_Mix.wav is 13230 samples, longer" in messages
    assert "SongB_Mix.wav is 11025 samples, longer" in messages
    song = ds.load("SongA")
    assert song.stems.shape == (5, 10, K) and song.n_valid_chunks == 10


def test_set_length_pads_shorter_songs(tiny_dataset, tmp_path):
    ds = prep(tiny_dataset, tmp_path / "cache", n_chunks=40)
    song = ds.load("SongA")
    assert song.stems.shape == (5, 40, K) and song.n_valid_chunks == 27
    assert not np.any(song.stems[:, 27:]) and not np.any(song.reference[27:])
    assert ds.manifest["songs"]["SongA"]["warnings"] == []


def test_stereo_is_refused_before_anything_is_written(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"stereo caches are not supported.*without --stereo"):
        prep(tiny_dataset, tmp_path / "cache", mono=False)
    assert not (tmp_path / "cache").exists()


def test_resample_to_target_rate(tiny_dataset, tmp_path):
    ds = prep(tiny_dataset, tmp_path / "cache", sample_rate=22050)
    assert ds.sample_rate == 22050 and ds.n_chunks == int(np.ceil(0.30 * 22050 / K))


def test_musdb_stereo_48k_through_prepare(tmp_path):
    folder = tmp_path / "musdb" / "train" / "Artist - Title"
    folder.mkdir(parents=True)
    n = 4800
    for i, stem in enumerate(("mixture", "vocals", "drums", "bass", "other")):
        sf.write(
            folder / f"{stem}.wav",
            tone(n, 100 * (i + 1), sr=48000, channels=2),
            48000,
            subtype="PCM_24",
        )
    ds = prep(tmp_path / "musdb", tmp_path / "cache")
    assert ds.slot_names == ["Drums/Drums#1", "Strings/Bass#1", "Vocals/Lead#1", "Extra/Extra#1"]
    assert ds.n_chunks == int(np.ceil(4410 / K))


def _kill_script(src, cache, kill_at):
    return textwrap.dedent(f"""
        import os, signal
        import mixing_env.data.song_writer as P
        import mixing_env.data.prepare as prepare
        orig, calls = P.read_audio, [0]
        def killer(path, **kw):
            calls[0] += 1
            if calls[0] == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: a real crash
            return orig(path, **kw)
        P.read_audio = killer
        prepare.prepare_dataset({str(src)!r}, {str(cache)!r}, progress=False, layout="compact")
    """)


def test_killed_mid_song_then_rerun_equals_clean_run(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    # SongA reads 4 files (mix + 3 stems); the 7th read is SongB's second stem.
    proc = subprocess.run(
        [sys.executable, "-c", _kill_script(tiny_dataset, cache, 7)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    with pytest.raises(CacheError, match="incomplete"):
        PreparedDataset(cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert list(manifest["songs"]) == ["SongA"]
    assert not (cache / "songs" / "SongB").exists()
    assert any(p.name.startswith(".tmp-SongB") for p in (cache / "songs").iterdir())
    done_at = manifest["songs"]["SongA"]["prepared_at"]

    resumed = prep(tiny_dataset, cache)
    clean = prep(tiny_dataset, tmp_path / "clean")
    assert resumed.manifest["songs"]["SongA"]["prepared_at"] == done_at  # not redone
    assert sorted(p.name for p in (cache / "songs").iterdir()) == ["SongA", "SongB"]
    for name in clean.names:
        x, y = resumed.load(name), clean.load(name)
        np.testing.assert_array_equal(x.stems, y.stems)
        np.testing.assert_array_equal(x.reference, y.reference)
        np.testing.assert_array_equal(x.track_mask, y.track_mask)


def test_interrupt_inside_song_write_leaves_previous_song_good(tiny_dataset, tmp_path, monkeypatch):
    import mixing_env.data.song_writer as P

    cache = tmp_path / "cache"
    prep(tiny_dataset, cache)
    before = np.array(PreparedDataset(cache).load("SongB").stems)
    # Change SongB, then die while rewriting it: the old SongB must stay intact on disk.
    y = tone(int(0.25 * SR), 990)
    sf.write(tiny_dataset / "SongB" / "07_Vox.wav", y, SR)
    calls = [0]
    orig = P.read_audio

    def boom(path, **kw):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return orig(path, **kw)

    monkeypatch.setattr(P, "read_audio", boom)
    with pytest.raises(KeyboardInterrupt):
        prep(tiny_dataset, cache)
    np.testing.assert_array_equal(np.load(cache / "songs" / "SongB" / "stems.npy"), before)
    assert not any(p.name.startswith(".") for p in (cache / "songs").iterdir())
    monkeypatch.setattr(P, "read_audio", orig)
    after = prep(tiny_dataset, cache).load("SongB")
    np.testing.assert_allclose(np.asarray(after.stems[4]).ravel()[: y.size], y, atol=1e-4)


def test_rerun_skips_and_touched_source_is_redone(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    first = prep(tiny_dataset, cache).manifest["songs"]
    second = prep(tiny_dataset, cache).manifest["songs"]
    assert {k: v["prepared_at"] for k, v in first.items()} == {
        k: v["prepared_at"] for k, v in second.items()
    }
    stem = tiny_dataset / "SongB" / "01_Kick.wav"
    st = stem.stat()
    os.utime(stem, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = prep(tiny_dataset, cache).manifest["songs"]
    assert third["SongA"]["prepared_at"] == first["SongA"]["prepared_at"]
    assert third["SongB"]["prepared_at"] > first["SongB"]["prepared_at"]


def test_changed_options_redo_everything(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    first = prep(tiny_dataset, cache).manifest["songs"]
    with pytest.raises(CacheError, match=r"chunk_size=500 \(now 250\).*--rebuild"):
        prep(tiny_dataset, cache, chunk_size=250)
    again = prep(tiny_dataset, cache, chunk_size=250, rebuild=True)
    assert again.chunk_size == 250 and again.load("SongA").stems.shape[2] == 250
    assert all(again.manifest["songs"][k]["prepared_at"] > first[k]["prepared_at"] for k in first)


def test_user_taxonomy_changes_slots_and_redoes(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    prep(tiny_dataset, cache)
    user = tmp_path / "mine.yaml"
    user.write_text("rules:\n  - {match: 'gtr', slot: Strings/Acoustic}\n")
    ds = prep(tiny_dataset, cache, taxonomy=user, rebuild=True)
    assert "Strings/Acoustic#2" in ds.slot_names and "Strings/Electric#1" not in ds.slot_names
    assert ds.manifest["taxonomy_source"] == str(user)


def test_forced_slot_layout(tiny_dataset, tmp_path):
    layout = ["Drums/Kick#1", "Keys/Piano#1", "Strings/Electric#1", "Vocals/Lead#1"]
    with pytest.warns(DataWarning) as rec:
        ds = prep(tiny_dataset, tmp_path / "cache", slots=layout)
    messages = " | ".join(str(w.message) for w in rec)
    assert "06_ElecGtr2.wav: the layout's Strings/Electric slots are full, and no Extra" in messages
    assert "02_Bass.wav: the layout has no Strings/Bass slot, and no Extra slot is free" in messages
    assert any("left out" in n for n in ds.manifest["songs"]["SongA"]["placement"])
    assert ds.slot_names == layout
    np.testing.assert_array_equal(ds.load("SongB").track_mask, [1, 0, 1, 1])
    np.testing.assert_array_equal(ds.load("SongA").track_mask, [1, 0, 0, 1])


# ------------------------------------------------------------------------------ bad input
def test_empty_folder(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DatasetError, match=r"src is empty"):
        prep(tmp_path / "src", tmp_path / "cache")


def test_no_mix_song_skipped_or_strict(tiny_dataset, tmp_path):
    (tiny_dataset / "SongC").mkdir()
    sf.write(tiny_dataset / "SongC" / "01_Kick.wav", tone(1000, 60), SR)
    ds = prep(tiny_dataset, tmp_path / "cache")
    assert ds.names == ["SongA", "SongB"]
    assert "no mix found" in ds.failed["SongC"]
    with pytest.raises(DatasetError, match=r"no mix found in .*SongC"):
        prep(tiny_dataset, tmp_path / "strict", strict=True)


def test_corrupt_stem_song_skipped_or_strict(tiny_dataset, tmp_path):
    (tiny_dataset / "SongB" / "05_ElecGtr1.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    ds = prep(tiny_dataset, tmp_path / "cache")
    assert ds.names == ["SongA"] and "05_ElecGtr1.wav" in ds.failed["SongB"]
    with pytest.raises(AudioFileError, match=r"05_ElecGtr1\.wav"):
        prep(tiny_dataset, tmp_path / "strict", strict=True)


def test_nan_stem_song_skipped_or_strict(tiny_dataset, tmp_path):
    y = tone(int(0.3 * SR), 60).astype(np.float32)
    y[100:110] = np.nan
    sf.write(tiny_dataset / "SongA" / "01_Kick.wav", y, SR, subtype="FLOAT")
    ds = prep(tiny_dataset, tmp_path / "cache")
    assert ds.names == ["SongB"]
    assert "01_Kick.wav holds 10 NaN or inf" in ds.failed["SongA"]
    assert not (tmp_path / "cache" / "songs" / "SongA").exists()
    with pytest.raises(AudioFileError, match=r"01_Kick\.wav holds 10 NaN"):
        prep(tiny_dataset, tmp_path / "strict", strict=True)


def test_nothing_cached_is_lost_when_a_song_turns_bad(tiny_dataset, tmp_path):
    cache = tmp_path / "cache"
    good = np.array(prep(tiny_dataset, cache).load("SongA").stems)
    (tiny_dataset / "SongA" / "02_Bass.wav").write_bytes(b"not audio at all")
    ds = prep(tiny_dataset, cache)
    assert "02_Bass.wav" in ds.failed["SongA"]
    assert ds.manifest["songs"]["SongA"]["stale"] is True
    np.testing.assert_array_equal(ds.load("SongA").stems, good)


@pytest.mark.parametrize(
    ("n_stem", "word", "action"), [(9000, "shorter", "zero-padded"), (16000, "longer", "trimmed")]
)
def test_stem_length_mismatch_warns_and_fits(tmp_path, n_stem, word, action):
    n_mix = 12000
    write_cambridge_song(
        tmp_path / "src" / "S",
        {"01_Kick": tone(n_mix, 60), "02_Snare": tone(n_stem, 200)},
        mix=tone(n_mix, 100),
    )
    with pytest.warns(DataWarning, match=rf"02_Snare\.wav is {word} than the mix .*{action}"):
        ds = prep(tmp_path / "src", tmp_path / "cache")
    flat = np.asarray(ds.load("S").stems).reshape(2, -1)
    assert ds.n_chunks == 24
    keep = min(n_stem, n_mix)
    np.testing.assert_allclose(flat[1, :keep], tone(keep, 200), atol=1e-4)
    assert not np.any(flat[1, keep:])
    assert any(word in w for w in ds.manifest["songs"]["S"]["warnings"])


def test_sample_rate_mismatch_is_resampled(tmp_path):
    n = 4410
    write_cambridge_song(tmp_path / "src" / "S", {"01_Kick": tone(n, 60)}, mix=tone(n, 100))
    sf.write(tmp_path / "src" / "S" / "02_Bass.wav", tone(4800, 110, sr=48000), 48000)
    with pytest.warns(DataWarning, match=r"02_Bass\.wav is at 48000 Hz .*resampled"):
        ds = prep(tmp_path / "src", tmp_path / "cache")
    bass = np.asarray(ds.load("S").stems[ds.slot_names.index("Strings/Bass#1")]).ravel()
    np.testing.assert_allclose(bass[100 : n - 100], tone(n, 110)[100 : n - 100], atol=3e-3)


def test_silent_stem_kept_and_marked(tiny_dataset, tmp_path):
    sf.write(tiny_dataset / "SongA" / "02_Bass.wav", np.zeros(int(0.3 * SR)), SR)
    with pytest.warns(DataWarning, match=r"02_Bass\.wav is silent"):
        ds = prep(tiny_dataset, tmp_path / "cache")
    rec = ds.manifest["songs"]["SongA"]
    assert rec["silent"] == ["Strings/Bass#1"]
    assert ds.load("SongA").track_mask[ds.slot_names.index("Strings/Bass#1")] == 1.0


def test_bad_options(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"chunk_size must be a positive int .* got 0"):
        prep(tiny_dataset, tmp_path / "c", chunk_size=0)
    with pytest.raises(ConfigError, match=r"'Kick1' is not of the form"):
        prep(tiny_dataset, tmp_path / "c", slots=["Kick1"])


# ---------------------------------------------------------------------------- cache errors
def test_cache_errors(tiny_dataset, tmp_path):
    with pytest.raises(CacheError, match=r"manifest\.json is missing"):
        PreparedDataset(tmp_path / "none")
    cache = tmp_path / "cache"
    prep(tiny_dataset, cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    with pytest.raises(CacheError, match=r"'Nope' is not in the prepared dataset"):
        PreparedDataset(cache).load("Nope")
    (cache / "songs" / "SongA" / "reference.npy").unlink()
    with pytest.raises(CacheError, match=r"SongA is missing \['reference\.npy'\]"):
        PreparedDataset(cache).load("SongA")
    (cache / "manifest.json").write_text(json.dumps(dict(manifest, channels=2)))
    with pytest.raises(CacheError, match=r"is a stereo cache.*without --stereo"):
        PreparedDataset(cache)
    manifest["format_version"] = CACHE_FORMAT_VERSION + 1
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match=rf"format version {CACHE_FORMAT_VERSION + 1}"):
        PreparedDataset(cache)
