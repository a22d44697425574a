"""One slot layout for every song: the fixed C = 72 layout, placement, layout files (issue 16)."""

import json

import numpy as np
import pytest
from _datafiles import SR, tone, write_cambridge_song

from mixing_env.data.audio_io import DataWarning
from mixing_env.data.cache import PreparedDataset
from mixing_env.data.layouts import discover_songs
from mixing_env.data.prepare import prepare_dataset
from mixing_env.data.slots import (
    build_song,
    compact_layout,
    default_layout,
    layout_mismatch,
    place_stems,
    read_layout,
    resolve_layout,
    write_layout,
)
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import ConfigError, DatasetError
from mixing_env.songs.procedural import make_synthetic_dataset, synthetic_songs
from rl_models.app.cli import main

N = int(0.2 * SR)


@pytest.fixture
def two_datasets(tmp_path):
    """A rock band, and a song with a trumpet, a violin, two toms and a name no rule knows."""
    band = tmp_path / "band"
    write_cambridge_song(band / "Rock", {"01_Kick": tone(N, 60), "02_Snare": tone(N, 200),
                                         "03_Bass": tone(N, 110), "04_ElecGtr": tone(N, 330),
                                         "05_LeadVox": tone(N, 440)})
    other = tmp_path / "other"
    write_cambridge_song(other / "Chamber", {"01_Kick": tone(N, 55), "02_Tom1": tone(N, 150),
                                             "03_Tom2": tone(N, 120), "04_Trumpet": tone(N, 520),
                                             "05_Violin": tone(N, 660),
                                             "06_Zzyzx": tone(N, 770)})
    return band, other


def test_default_layout_is_72_slots_of_the_taxonomy():
    layout = default_layout()
    assert len(layout) == 72 and len(set(layout)) == 72
    known = {f"{s}/{i}" for s, i in Taxonomy.load().instruments}
    assert {slot.split("#")[0] for slot in layout} == known  # every instrument has a slot
    order = [slot.split("#")[0] for slot in layout]
    assert order == sorted(order, key=[f"{s}/{i}" for s, i in Taxonomy.load().instruments].index)


def test_two_datasets_with_different_instruments_share_one_layout(two_datasets, tmp_path):
    band, other = two_datasets
    a = prepare_dataset(band, tmp_path / "a", progress=False)
    with pytest.warns(DataWarning, match=r"06_Zzyzx\.wav: no name rule matches; placed in "
                                         r"Extra/Unknown#1"):
        b = prepare_dataset(other, tmp_path / "b", progress=False)
    assert a.slot_names == b.slot_names == default_layout()
    record = b.manifest["songs"]["Chamber"]
    assert record["stem_to_slot"] == {
        "01_Kick.wav": "Drums/Kick#1", "02_Tom1.wav": "Drums/Tom#1", "03_Tom2.wav": "Drums/Tom#2",
        "04_Trumpet.wav": "Brass/Brass#1", "05_Violin.wav": "Strings/Orchestral#1",
        "06_Zzyzx.wav": "Extra/Unknown#1",
    }
    assert [n for n in record["placement"] if "Zzyzx" in n]  # reported in the manifest
    song = b.load("Chamber")
    row = b.slot_names.index("Brass/Brass#1")
    np.testing.assert_allclose(np.asarray(song.stems[row]).ravel()[:N], tone(N, 520), atol=1e-4)
    assert int(song.track_mask.sum()) == 6


def test_full_instrument_overflows_to_its_section_extra():
    tax = Taxonomy.load()
    toms = [f"{k:02d}_Tom{k}" for k in range(1, 7)]
    p = place_stems(toms, default_layout(), tax)
    assert p.slots == ("Drums/Tom#1", "Drums/Tom#2", "Drums/Tom#3", "Drums/Tom#4",
                       "Drums/Extra#1", None)
    assert "Drums/Tom slots are full; placed in Drums/Extra#1" in p.notes[0]
    assert "05_Tom5" in p.notes[0] and "06_Tom6" in p.notes[1]
    assert p.notes[1].endswith("the layout's Drums/Tom slots are full, and no Extra slot is "
                               "free; left out")
    assert p.left_out == [5]
    trumpets = place_stems([f"Trumpet{k}" for k in range(1, 5)], default_layout(), tax)
    assert trumpets.slots[3] == "Extra/Extra#1"  # Brass has no Extra of its own


def test_layout_file_round_trips(tmp_path):
    for layout in (default_layout(), ["Drums/Kick#1", "Vocals/Lead#1", "Extra/Unknown#1"]):
        path = write_layout(tmp_path / "layout.yaml", layout)
        assert read_layout(path) == layout
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"counts": {"Drums/Kick": 2, "Brass/Brass": 1}}))
    assert read_layout(counts) == ["Drums/Kick#1", "Drums/Kick#2", "Brass/Brass#1"]
    meta = tmp_path / "deepmixing.json"  # a checkpoint's metadata
    meta.write_text(json.dumps({"slot_names": ["Drums/Kick#1", "Vocals/Lead#1"], "x": 1}))
    assert read_layout(meta) == ["Drums/Kick#1", "Vocals/Lead#1"]


@pytest.mark.parametrize(("text", "match"), [
    ("slots: [Kick1]", r"'Kick1' is not of the form"),
    ("slots: [Drums/Kick#1, Drums/Kick#1]", r"repeated in the layout: \['Drums/Kick#1'\]"),
    ("counts: {Drums/Kick: 0}", r"counts entry Drums/Kick: 0"),
    ("nothing: 1", r"needs 'slots'"),
    ("[1, 2", r"not readable YAML"),
])
def test_bad_layout_files_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        read_layout(path)
    assert "bad.yaml" in str(e.value)
    with pytest.raises(ConfigError, match="layout file not found"):
        read_layout(tmp_path / "none.yaml")


def test_prepare_with_a_layout_file_and_compact(two_datasets, tmp_path):
    band, other = two_datasets
    small = write_layout(tmp_path / "small.yaml", ["Drums/Kick#1", "Drums/Extra#1",
                                                   "Vocals/Lead#1", "Extra/Unknown#1"])
    with pytest.warns(DataWarning, match=r"02_Snare\.wav: the layout has no Drums/Snare slot; "
                                         r"placed in Drums/Extra#1"):
        ds = prepare_dataset(band, tmp_path / "c1", progress=False, layout=small)
    assert ds.slot_names == read_layout(small) and ds.manifest["layout_source"] == str(small)
    compact = prepare_dataset(other, tmp_path / "c2", progress=False, layout="compact")
    assert compact.slot_names == ["Drums/Kick#1", "Drums/Tom#1", "Drums/Tom#2",
                                  "Strings/Orchestral#1", "Brass/Brass#1", "Extra/Unknown#1"]


def test_cli_prepare_layout_from_a_checkpoint_metadata_and_stereo_refused(
        two_datasets, tmp_path, capsys):
    band, _ = two_datasets
    meta = tmp_path / "deepmixing.json"
    meta.write_text(json.dumps({"slot_names": ["Drums/Kick#1", "Strings/Bass#1"]}))
    assert main(["prepare", str(band), str(tmp_path / "c"), "--no-progress",
                 "--layout", str(meta)]) == 0
    out = capsys.readouterr().out
    assert "C=2 slots" in out
    assert "05_LeadVox.wav: the layout has no Vocals/Lead slot, and no Extra slot is free; " \
           "left out" in out
    assert main(["prepare", str(band), str(tmp_path / "s"), "--stereo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepmixing: error: stereo caches are not")
    assert not (tmp_path / "s").exists()


def test_cli_prepare_layout_from_a_checkpoint_folder(two_datasets, tmp_path):
    from rl_models.checkpoints import METADATA_FILE, MODULE_SUBDIR

    _, other = two_datasets
    ckpt = tmp_path / "trial" / "checkpoint_000003"
    (ckpt / MODULE_SUBDIR).mkdir(parents=True)
    layout = ["Drums/Tom#1", "Drums/Tom#2", "Brass/Brass#1", "Extra/Unknown#1"]
    (ckpt / METADATA_FILE).write_text(json.dumps({"slot_names": layout}))
    assert main(["prepare", str(other), str(tmp_path / "c"), "--no-progress",
                 "--layout", str(tmp_path / "trial")]) == 0
    assert PreparedDataset(tmp_path / "c").slot_names == layout


def test_cli_taxonomy_reports_unknown_stems(two_datasets, capsys):
    _, other = two_datasets
    assert main(["taxonomy", str(other)]) == 0
    out = capsys.readouterr().out
    assert "default layout, C=72" in out and "Brass/Brass#1" in out
    assert "Chamber/06_Zzyzx.wav: no name rule matches; placed in Extra/Unknown#1" in out


def test_ambiguous_mix_pattern_names_the_candidates(tmp_path):
    write_cambridge_song(tmp_path / "Song", {"01_Kick": tone(N, 60)})
    (tmp_path / "Song" / "Song_MixFX.wav").write_bytes((tmp_path / "Song" / "Song_Mix.wav")
                                                       .read_bytes())
    with pytest.raises(DatasetError, match=r"2 files in .*Song match the mix pattern '\*Mix\*': "
                                           r"Song_Mix\.wav, Song_MixFX\.wav"):
        discover_songs(tmp_path)
    (song,) = discover_songs(tmp_path, mix_pattern="*_Mix.wav")
    assert song.mix_path.name == "Song_Mix.wav"


@pytest.mark.parametrize("layout", [None, "compact"])
def test_synthetic_memory_route_equals_prepare_in_either_layout(tmp_path, layout):
    kw = dict(n_songs=2, seconds=0.3, n_tracks=(3, 5), seed=4)
    make_synthetic_dataset(tmp_path / "src", **kw)
    ds = prepare_dataset(tmp_path / "src", tmp_path / "cache", progress=False, layout=layout)
    for song in synthetic_songs(**kw, layout=layout):
        disk = ds.load(song.name)
        assert disk.slot_names == song.slot_names
        for attr in ("stems", "reference", "track_mask", "true_gains"):
            np.testing.assert_array_equal(getattr(disk, attr), getattr(song, attr), err_msg=attr)


def test_default_layout_refuses_a_taxonomy_with_other_instruments(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("mode: replace\nsections:\n  - {name: Rhythm, instruments: [Drums, Bass]}\n")
    tax = Taxonomy.load(user)
    with pytest.raises(ConfigError, match=r"mine\.yaml has instruments the default layout lacks "
                                          r"\(Rhythm/Drums, Rhythm/Bass\); give layout='compact'"):
        resolve_layout(None, taxonomy=tax)
    assert resolve_layout("compact", taxonomy=tax, songs=[["kick"]])[0] == ["Rhythm/Bass#1"]


def test_layout_mismatch_names_the_slots():
    a = ["Drums/Kick#1", "Vocals/Lead#1"]
    assert layout_mismatch(a, a) is None
    msg = layout_mismatch(a, ["Drums/Kick#1", "Keys/Piano#1", "Extra/FX#1"])
    assert msg == ("slot layouts differ: C = 2 expected, 3 given; missing Vocals/Lead#1; "
                   "not expected Keys/Piano#1, Extra/FX#1")


def test_build_song_sums_placed_stems_when_there_is_no_reference():
    tax = Taxonomy.load()
    layout, source = resolve_layout("compact", taxonomy=tax, songs=[["Kick", "Bass"]])
    assert source == "compact" and layout == compact_layout(tax, [["Kick", "Bass"]])
    stems = [np.ones(7, np.float32), 2 * np.ones(5, np.float32)]
    song = build_song("s", place_stems(["Kick", "Bass"], layout, tax), stems, layout=layout,
                      sample_rate=SR, chunk_size=4)
    assert song.stems.shape == (2, 2, 4) and song.n_valid_chunks == 2
    np.testing.assert_array_equal(song.reference.ravel(), [3, 3, 3, 3, 3, 1, 1, 0])
