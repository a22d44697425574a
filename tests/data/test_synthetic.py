import numpy as np
import pytest

from mixing_env.data.prepare import prepare_dataset
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import ConfigError
from mixing_env.songs.procedural import (
    INSTRUMENTS,
    generate_song,
    make_synthetic_dataset,
    synthetic_songs,
)

K = 500
KW = dict(n_songs=2, seconds=1.2, n_tracks=(3, 6), seed=11)


def test_folder_route_equals_memory_route(tmp_path):
    folders = make_synthetic_dataset(tmp_path / "src", **KW)
    assert [f.name for f in folders] == ["SynthSong001", "SynthSong002"]
    assert (folders[0] / "SynthSong001_Mix.wav").is_file() and (
        folders[0] / "true_gains.npz"
    ).is_file()
    ds = prepare_dataset(tmp_path / "src", tmp_path / "cache", progress=False)
    mem = synthetic_songs(**KW)
    assert ds.names == [s.name for s in mem]
    for song in mem:
        disk = ds.load(song.name)
        assert disk.slot_names == song.slot_names
        assert disk.n_valid_chunks == song.n_valid_chunks
        for attr in ("stems", "reference", "track_mask", "true_gains"):
            np.testing.assert_array_equal(getattr(disk, attr), getattr(song, attr), err_msg=attr)


def test_deterministic_and_independent_of_n_songs():
    a = synthetic_songs(**KW)
    b = synthetic_songs(**dict(KW, n_songs=3))
    np.testing.assert_array_equal(a[1].reference, b[1].reference)
    c = synthetic_songs(**dict(KW, seed=12))
    assert not np.allclose(a[0].reference[: c[0].n_chunks], c[0].reference[: a[0].n_chunks])


def test_reference_is_the_known_per_chunk_gain_mix():
    for song in synthetic_songs(**KW):
        mix = np.einsum(
            "ctk,ct->tk", song.stems.astype(np.float64), song.true_gains.astype(np.float64)
        )
        np.testing.assert_allclose(mix, song.reference, atol=1e-6)
        assert np.all(song.true_gains[song.track_mask == 0] == 0)
        assert np.all(song.true_gains[song.track_mask == 1] > 0)


def test_levels_raw_stems_and_mix_peak():
    s = generate_song(0, seconds=1.0, n_tracks=8, seed=3)
    peaks_db = 20 * np.log10(np.max(np.abs(s.stems), axis=1))
    assert np.all(peaks_db > -20.01) and np.all(peaks_db < -2.99)
    assert 20 * np.log10(np.max(np.abs(s.reference))) == pytest.approx(-1.0, abs=1e-3)


def test_gains_follow_house_style_and_sections():
    s = generate_song(0, seconds=20.0, n_tracks=14, seed=5)
    T = s.true_gains.shape[1]
    scale_db = 20 * np.log10(s.meta["mix_scale"])
    for f, g in zip(s.stem_files, s.true_gains, strict=True):
        # gain * recording level / scale is the house level +- song offset +- section moves.
        rest = 20 * np.log10(g) + s.meta["recording_level_db"][f] - scale_db - s.meta["house_db"][f]
        assert np.all(np.abs(rest) < 8), f
    types = {sec["type"] for sec in s.meta["sections"]}
    assert {"intro", "verse", "chorus"} <= types
    # Instruments enter and leave: some stems are silent in whole chunks and sound in others.
    chunk_peak = np.abs(s.stems[:, : (s.stems.shape[1] // K) * K].reshape(len(s.stems), -1, K)).max(
        2
    )
    enters_leaves = [(p == 0).any() and (p > 0).any() for p in chunk_peak]
    assert sum(enters_leaves) >= 5
    lead = s.stem_files.index("13_LeadVox.wav")
    assert np.ptp(20 * np.log10(s.true_gains[lead])) > 0.5 or "chorus" not in types
    assert T == int(np.ceil(20.0 * 44100 / K))


@pytest.mark.parametrize("n_tracks", [2, 9, 24])
def test_track_counts_and_all_stems_classified(n_tracks):
    (song,) = synthetic_songs(n_songs=1, seconds=0.3, n_tracks=n_tracks, seed=1)
    assert int(song.track_mask.sum()) == n_tracks
    real = [name for name, m in zip(song.slot_names, song.track_mask, strict=True) if m]
    assert len(song.slot_names) == 72 and not any(name.startswith("Extra/") for name in real)


def test_track_range_drawn_per_song():
    counts = {
        int(s.track_mask.sum())
        for s in synthetic_songs(n_songs=6, seconds=0.2, n_tracks=(2, 5), seed=0)
    }
    assert counts <= {2, 3, 4, 5} and len(counts) > 1


def test_every_instrument_name_maps_to_its_own_slot():
    tax = Taxonomy.load()
    expect = {
        "Kick": "Drums/Kick",
        "HiHat": "Drums/Hi-Hat",
        "Tom": "Drums/Tom",
        "Bass": "Strings/Bass",
        "AcGtr": "Strings/Acoustic",
        "SynthPad": "Keys/Synth",
        "LeadVox": "Vocals/Lead",
        "BackingVox2": "Vocals/Backing",
        "Crash": "Drums/Cymbal",
        "Sax": "Woodwind/Woodwind",
    }
    got = {i.name: "/".join(tax.classify(f"{i.number:02d}_{i.name}.wav")) for i in INSTRUMENTS}
    assert {k: got[k] for k in expect} == expect


@pytest.mark.parametrize("bad", [1, 25, (5, 3), (1, 4)])
def test_bad_track_count(bad):
    with pytest.raises(ConfigError, match=r"n_tracks must be .* got"):
        synthetic_songs(n_songs=1, seconds=0.2, n_tracks=bad, seed=0)


def test_song_folder_writer_round_trips_the_true_gains(tmp_path):
    from mixing_env.data.layouts import discover_songs
    from mixing_env.data.song_folder import load_true_gains, write_song_folder

    stems = [np.full(1000, 0.1, np.float32), np.full(800, 0.2, np.float32)]
    gains = [np.array([1.0, 0.5], np.float32), np.array([0.25, 2.0], np.float32)]
    files = ["01_Kick.wav", "02_Trumpet.wav"]
    folder = write_song_folder(tmp_path / "Song", stem_files=files, stems=stems,
                               reference=0.5 * stems[0], true_gains=gains, sample_rate=8000,
                               chunk_size=500, meta={"model": "test"})
    (song,) = discover_songs(tmp_path)
    assert song.mix_path == folder / "Song_Mix.wav" and song.truth_path is not None
    got = load_true_gains(song.truth_path, files, chunk_size=500, sample_rate=8000)
    assert set(got) == set(files)
    for f, g in zip(files, gains, strict=True):
        np.testing.assert_array_equal(got[f], g)
    assert load_true_gains(song.truth_path, files, chunk_size=250, sample_rate=8000) is None
    with pytest.raises(ConfigError, match="2 stem files, 1 stems and 2 gain rows"):
        write_song_folder(tmp_path / "Bad", stem_files=files, stems=stems[:1], reference=stems[0],
                          true_gains=gains, sample_rate=8000, chunk_size=500)
