import numpy as np
import pytest
import soundfile as sf
import yaml
from _datafiles import SR, tone, write_cambridge_song

from mixing_env.data.layouts import discover_songs, scan_songs
from mixing_env.errors import DatasetError

N = 2000


def test_cambridge_flat(tmp_path):
    write_cambridge_song(
        tmp_path / "Artist_Song", {"01_Kick": tone(N, 60), "11_LeadVox": tone(N, 440)}
    )
    (tmp_path / "Artist_Song" / "._01_Kick.wav").write_bytes(b"macOS resource fork")
    (song,) = discover_songs(tmp_path)
    assert song.layout == "cambridge" and song.name == "Artist_Song"
    assert song.mix_path.name == "Artist_Song_Mix.wav"
    assert [s.name for s in song.stems] == ["01_Kick", "11_LeadVox"]


def test_cambridge_full_subfolder(tmp_path):
    write_cambridge_song(
        tmp_path / "Song", {"01_Kick": tone(N, 60), "07_ElecGtr2": tone(N, 200)}, full=True
    )
    (song,) = discover_songs(tmp_path)
    assert [s.path.parent.name for s in song.stems] == ["Song_Full", "Song_Full"]
    assert song.mix_path.parent.name == "Song"


def test_cambridge_mix_pattern_configurable(tmp_path):
    write_cambridge_song(tmp_path / "Song", {"01_Kick": tone(N, 60)}, mix_name="Song_Reference")
    with pytest.raises(DatasetError, match=r"no mix found in .*Song.*'\*Mix\*'"):
        discover_songs(tmp_path)
    (song,) = discover_songs(tmp_path, mix_pattern="*reference*")
    assert song.mix_path.name == "Song_Reference.wav"


def test_medleydb(tmp_path):
    folder = tmp_path / "Artist_Track"
    stems = folder / "Artist_Track_STEMS"
    raw = folder / "Artist_Track_RAW"
    stems.mkdir(parents=True)
    raw.mkdir()
    sf.write(folder / "Artist_Track_MIX.wav", tone(N, 100), SR)
    sf.write(stems / "Artist_Track_STEM_01.wav", tone(N, 60), SR)
    sf.write(stems / "Artist_Track_STEM_02.wav", tone(N, 300), SR)
    sf.write(raw / "Artist_Track_RAW_01_01.wav", tone(N, 60), SR)
    meta = {
        "mix_filename": "Artist_Track_MIX.wav",
        "stem_dir": "Artist_Track_STEMS",
        "raw_dir": "Artist_Track_RAW",
        "stems": {
            "S01": {
                "filename": "Artist_Track_STEM_01.wav",
                "instrument": "drum set",
                "raw": {"R01": {"filename": "Artist_Track_RAW_01_01.wav"}},
            },
            "S02": {"filename": "Artist_Track_STEM_02.wav", "instrument": ["male singer"]},
        },
    }
    (folder / "Artist_Track_METADATA.yaml").write_text(yaml.safe_dump(meta))
    (song,) = discover_songs(tmp_path)
    assert song.layout == "medleydb"
    assert [s.name for s in song.stems] == ["drum set", "male singer"]
    assert [s.path.name for s in song.stems] == [
        "Artist_Track_STEM_01.wav",
        "Artist_Track_STEM_02.wav",
    ]
    assert song.mix_path.name == "Artist_Track_MIX.wav"


def test_medleydb_missing_stem_file_named(tmp_path):
    folder = tmp_path / "X"
    folder.mkdir()
    sf.write(folder / "X_MIX.wav", tone(N, 100), SR)
    (folder / "X_METADATA.yaml").write_text(
        yaml.safe_dump(
            {
                "mix_filename": "X_MIX.wav",
                "stems": {"S01": {"filename": "X_STEM_01.wav", "instrument": "piano"}},
            }
        )
    )
    with pytest.raises(DatasetError, match=r"X_STEM_01\.wav is missing"):
        discover_songs(tmp_path)


def test_musdb_nested_train_test(tmp_path):
    for split, name in [("train", "A Song"), ("test", "B Song")]:
        folder = tmp_path / split / name
        folder.mkdir(parents=True)
        for stem in ("mixture", "vocals", "drums", "bass", "other"):
            sf.write(folder / f"{stem}.wav", tone(N, 200, channels=2), SR)
    songs = discover_songs(tmp_path)
    assert [s.name for s in songs] == ["A Song", "B Song"]
    assert all(s.layout == "musdb" for s in songs)
    assert [s.name for s in songs[0].stems] == ["vocals", "drums", "bass", "other"]
    assert songs[0].mix_path.name == "mixture.wav"


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"dataset folder .*empty is empty"):
        discover_songs(tmp_path / "empty")


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"not found: .*nowhere"):
        discover_songs(tmp_path / "nowhere")


def test_folder_without_songs(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"no songs found in"):
        discover_songs(tmp_path)


def test_scan_collects_bad_song_and_keeps_good(tmp_path):
    write_cambridge_song(tmp_path / "Good", {"01_Kick": tone(N, 60)})
    (tmp_path / "NoMix").mkdir()
    sf.write(tmp_path / "NoMix" / "01_Kick.wav", np.zeros(N), SR)
    songs, errors = scan_songs(tmp_path)
    assert [s.name for s in songs] == ["Good"]
    assert list(errors) == [str(tmp_path / "NoMix")]
    assert "no mix found" in str(errors[str(tmp_path / "NoMix")])
