"""Sampled songs: General MIDI stems, their names, skeletons and the engineer's mix."""

import json

import numpy as np
import pytest

from mixing_env.data.prepare import prepare_dataset
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.engineer import ROLES, Engineer
from mixing_env.errors import ConfigError
from mixing_env.metrics import integrated_loudness
from mixing_env.songs.procedural import generate_song
from mixing_env.songs.sampled import generate_sampled_song, make_sampled_dataset
from mixing_env.songs.sampled.arrangement import Arrangement
from mixing_env.songs.sampled.master_bus import MasterBus, apply_master_bus
from mixing_env.songs.sampled.parts import LEADS, PARTS, choose_parts
from mixing_env.songs.sampled.renderer import render_part
from mixing_env.songs.sampled.skeleton import Skeleton
from mixing_env.songs.sampled.songs import MAX_STEMS
from rl_models.app.cli import main

SR, K = 44100, 500


@pytest.fixture(scope="module")
def song():
    return generate_sampled_song(0, seconds=8.0, n_tracks=(10, 11), seed=5)


def _role_index(s, role):
    return [i for i, f in enumerate(s.stem_files) if s.meta["parts"][f]["role"] == role]


def test_same_seed_same_song_and_bus_changes_only_the_reference(song):
    again = generate_sampled_song(0, seconds=8.0, n_tracks=(10, 11), seed=5, master_bus=True)
    assert again.stem_files == song.stem_files
    np.testing.assert_array_equal(again.stems, song.stems)
    np.testing.assert_array_equal(again.true_gains, song.true_gains)
    assert song.meta["master_bus"] is None and again.meta["master_bus"] is not None
    assert not np.allclose(again.reference, song.reference, atol=1e-3)
    assert np.all(np.isfinite(again.reference)) and np.max(np.abs(again.reference)) < 1.0
    assert 0.6 < np.corrcoef(again.reference, song.reference)[0, 1] < 0.995  # processed, same song
    other = generate_sampled_song(1, seconds=8.0, n_tracks=(10, 11), seed=5)
    assert other.stems.shape != song.stems.shape or not np.allclose(other.stems, song.stems)


def test_natural_recording_keeps_the_soundfonts_balance_and_the_same_mix(song):
    natural = generate_sampled_song(0, seconds=8.0, n_tracks=(10, 11), seed=5,
                                    recording_level="natural")
    assert natural.stem_files == song.stem_files and natural.meta["recording_level"] == "natural"
    ratio = np.max(np.abs(natural.stems), axis=1) / np.max(np.abs(song.stems), axis=1)
    np.testing.assert_allclose(natural.stems, song.stems * ratio[:, None], atol=1e-6)
    assert np.ptp(20 * np.log10(ratio)) > 3  # not the random levels, rescaled
    peaks_db = 20 * np.log10(np.max(np.abs(natural.stems), axis=1))
    assert np.isclose(peaks_db.max(), -6.0, atol=1e-3)  # one gain for the whole song
    hat, kick = _role_index(natural, "hihat"), _role_index(natural, "kick")
    assert peaks_db[hat[0]] < peaks_db[kick[0]]  # a hi-hat sounds softer than a kick
    # The engineer balances what it hears: gains undo the levels, the reference is the same.
    np.testing.assert_allclose(natural.reference, song.reference, atol=1e-4)


def test_stems_at_raw_levels_and_playing_in_their_sections(song):
    assert 10 <= len(song.stem_files) <= 11
    peaks_db = 20 * np.log10(np.max(np.abs(song.stems), axis=1))
    assert np.all(peaks_db >= -24.01) and np.all(peaks_db <= -1.99)
    assert np.ptp(peaks_db) > 3  # not pre-balanced
    T = song.true_gains.shape[1]
    padded = np.zeros((len(song.stems), T * K), dtype=np.float32)
    padded[:, : song.stems.shape[1]] = song.stems
    level = 10 * np.log10((padded.reshape(len(song.stems), T, K) ** 2).mean(2) + 1e-20)
    playing = level > level.max(axis=1, keepdims=True) - 40
    assert np.all(playing.mean(axis=1) > 0.04), playing.mean(axis=1)


@pytest.mark.parametrize("drum,program,pitch", [(True, 0, 36), (True, 0, 42), (False, 33, 40),
                                                (False, 53, 67)], ids=["kick", "hat", "bass",
                                                                       "voice"])
def test_renderer_sounds_at_each_note_and_is_silent_before(drum, program, pitch):
    starts = np.array([0.5, 1.1, 1.7])
    notes = np.stack([np.full(3, pitch), starts, starts + 0.3, np.full(3, 100)], axis=1)
    y = render_part(notes, program=program, drum=drum, seconds=2.2, sample_rate=SR)
    assert y.shape == (int(2.2 * SR),) and y.dtype == np.float32
    assert np.max(np.abs(y[: int(0.45 * SR)])) < 1e-4
    peak = np.max(np.abs(y))
    for s in starts:
        window = y[int(s * SR) : int((s + 0.1) * SR)]
        assert np.max(np.abs(window)) > 0.1 * peak


def test_vibrato_moves_the_pitch_of_a_sung_note():
    import librosa

    notes = np.array([[69, 0.1, 1.9, 100]])
    sd = []
    for cents in (0.0, 30.0):
        y = render_part(notes, program=53, drum=False, seconds=2.0, sample_rate=SR,
                        vibrato_cents=cents)
        f0 = librosa.yin(y[SR // 10 : int(1.8 * SR)].astype(np.float64), fmin=300, fmax=600,
                         sr=SR, frame_length=2048, hop_length=256)
        sd.append(np.std(1200 * np.log2(f0 / 440)))
    assert sd[0] < 8 and sd[1] > 12, sd


def test_master_bus_compresses_loud_passages_and_leaves_a_reverb_tail():
    bus = MasterBus(low_shelf_db=0.0, high_shelf_db=0.0, threshold_db=-6.0, ratio=4.0,
                    attack_s=0.005, release_s=0.1, reverb_rt60_s=1.0, reverb_wet_db=-12.0,
                    predelay_s=0.01)
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 330 * t)
    y = np.concatenate([0.05 * tone, 0.5 * tone, np.zeros(SR)])
    out = apply_master_bus(y, bus, rng=np.random.default_rng(0), sample_rate=SR).astype(float)
    rms = [np.sqrt(np.mean(out[a : a + SR // 2] ** 2)) for a in (SR // 2, 3 * SR // 2)]
    assert 20 * np.log10(rms[1] / rms[0]) < 20 - 3  # the 20 dB jump is squeezed
    assert np.max(np.abs(out)) == pytest.approx(0.5, rel=1e-4)
    assert np.sqrt(np.mean(out[2 * SR : 2 * SR + SR // 4] ** 2)) > 1e-3 * rms[1]  # reverb tail


def test_bad_soundfont_and_arguments_are_named(tmp_path):
    bad = tmp_path / "not_a_font.sf2"
    bad.write_bytes(b"hello")
    with pytest.raises(ConfigError, match="not_a_font.sf2"):
        generate_sampled_song(0, seconds=2.0, n_tracks=6, seed=0, soundfont=bad)
    with pytest.raises(ConfigError, match="n_tracks"):
        generate_sampled_song(0, seconds=2.0, n_tracks=(3, 6), seed=0)
    with pytest.raises(ConfigError, match="master_bus"):
        generate_sampled_song(0, seconds=2.0, n_tracks=6, seed=0, master_bus=1.5)
    with pytest.raises(ConfigError, match="seconds"):
        generate_sampled_song(0, seconds=0, n_tracks=6, seed=0)
    with pytest.raises(ConfigError, match="recording_level.*'hot'"):
        generate_sampled_song(0, seconds=2.0, n_tracks=6, seed=0, recording_level="hot")


def test_every_part_name_lands_in_its_slot():
    tax = Taxonomy.load()
    for number, part in enumerate(PARTS + LEADS, start=1):
        section, instrument = tax.classify(f"{number:02d}_{part.name}.wav")
        if part.slot is None:
            assert section not in {"Drums", "Vocals", "Keys", "Strings"}, part.name
        else:
            assert f"{section}/{instrument}" == part.slot, part.name
    band = [p for p in PARTS if p.name in ("Kick", "ElecGtr1", "ElecGtr2", "BackingVox1",
                                           "BackingVox2")]
    names = [f"{i:02d}_{p.name}.wav" for i, p in enumerate(band, 1)]
    assert tax.assign_slots(names) == ["Drums/Kick#1", "Strings/Electric#1",
                                       "Strings/Electric#2", "Vocals/Backing#1",
                                       "Vocals/Backing#2"]


def test_a_band_always_has_kick_snare_bass_and_one_lead():
    rng = np.random.default_rng(0)
    for k in (4, 8, MAX_STEMS):
        parts = choose_parts(rng, k)
        assert len(parts) == k
        names = [p.name for p in parts]
        assert {"Kick", "Snare", "Bass"} <= set(names)
        assert sum(p.role == "lead" for p in parts) == 1
        assert len(set(names)) == k
    assert {p.role for p in PARTS + LEADS} <= set(ROLES)


def test_written_songs_prepare_and_reference_is_the_gain_mix(tmp_path):
    folders = make_sampled_dataset(tmp_path / "src", n_songs=2, seconds=3.0, n_tracks=(6, 8),
                                   seed=2)
    meta = json.loads((folders[0] / "sampled.json").read_text())
    assert meta["generator"] == "sampled" and meta["master_bus"] is None
    ds = prepare_dataset(tmp_path / "src", tmp_path / "cache", progress=False)
    assert ds.names == ["SampledSong001", "SampledSong002"]
    for name in ds.names:
        s = ds.load(name)
        mix = np.einsum("ctk,ct->tk", s.stems.astype(np.float64), s.true_gains.astype(np.float64))
        np.testing.assert_allclose(mix, s.reference, atol=1e-6)
        assert np.all(s.true_gains[s.track_mask == 1] > 0)


def test_the_engineer_rides_the_lead_and_moves_the_band_with_the_sections(song):
    (lead,) = _role_index(song, "lead")
    T = song.true_gains.shape[1]
    x = np.zeros(T * K)
    x[: song.stems.shape[1]] = song.stems[lead]
    power = (x.reshape(T, K) ** 2).mean(1)
    on = power > power.max() * 1e-2
    gain_db = 20 * np.log10(song.true_gains)
    assert np.percentile(gain_db[lead, on], 95) - np.percentile(gain_db[lead, on], 5) > 2.0
    band = [i for i in range(len(song.stem_files))
            if song.meta["engineer"]["roles"][song.stem_files[i]] in ("guitar", "keys", "pad")]
    assert band and max(np.ptp(gain_db[i]) for i in band) > 2.0


def _role_balance(s, role):
    i = _role_index(s, role)[0]
    (lead,) = _role_index(s, "lead")
    T = s.true_gains.shape[1]

    def mixed(j):
        x = np.zeros(T * K)
        x[: s.stems.shape[1]] = s.stems[j]
        return (x.reshape(T, K) * s.true_gains[j][:, None]).ravel()

    return integrated_loudness(mixed(i), sample_rate=SR) - integrated_loudness(
        mixed(lead), sample_rate=SR)


def test_a_roles_level_spreads_by_several_db_from_song_to_song():
    kick = [_role_balance(generate_sampled_song(i, seconds=4.0, n_tracks=6, seed=9), "kick")
            for i in range(10)]
    procedural = []
    for i in range(10):
        s = generate_song(i, seconds=4.0, n_tracks=14, seed=9)
        s.meta["parts"] = {f: {"role": {"01_Kick.wav": "kick", "13_LeadVox.wav": "lead"}.get(
            f, "other")} for f in s.stem_files}
        procedural.append(_role_balance(s, "kick"))
    assert np.std(kick) > 2.0, kick
    assert np.std(kick) > 2 * np.std(procedural), (np.std(kick), np.std(procedural))


def test_songs_of_one_skeleton_share_the_music_and_differ_in_band_and_levels():
    skeleton = Skeleton(seed=3, index=0, seconds=4.0, sample_rate=SR, stream=1)
    a, b = (generate_sampled_song(0, seconds=4.0, n_tracks=(6, 11), seed=3, stream=1, draw=d,
                                  skeleton=skeleton) for d in (0, 1))
    assert a.meta["bpm"] == b.meta["bpm"] and a.meta["drum_kit"] == b.meta["drum_kit"]
    assert a.stem_files != b.stem_files or not np.allclose(a.stems, b.stems)
    shared = sorted(set(a.stem_files) & set(b.stem_files))
    assert shared  # kick, snare and bass play in every song of the skeleton
    one_skeleton = Skeleton(seed=3, index=0, seconds=4.0, sample_rate=SR, stream=1)
    again = generate_sampled_song(0, seconds=4.0, n_tracks=(6, 11), seed=3, stream=1, draw=1,
                                  skeleton=one_skeleton)
    np.testing.assert_array_equal(again.stems, b.stems)  # deterministic from the seed
    disk = generate_sampled_song(0, seconds=4.0, n_tracks=(6, 11), seed=3)  # stream 0
    assert disk.meta["skeleton"] == [3, 0, 0] and a.meta["skeleton"] == [3, 1, 0]


def test_the_engineer_mixes_the_reference_and_says_how():
    song = generate_sampled_song(2, seconds=4.0, n_tracks=(6, 8), seed=1,
                                 engineer=Engineer("rock", 0.5))
    info = song.meta["engineer"]
    assert info["style"] == "rock" and info["inconsistency_db"] == 0.5
    assert set(info["roles"]) == set(song.stem_files)
    assert "lead" in info["roles"].values()
    assert len(info["decisions_db"]["inconsistency"]) == len(song.stem_files)


def test_arrangement_sections_cover_the_song():
    arr = Arrangement(np.random.default_rng(4), 20.0)
    assert arr.sections[0][1] == 0 and arr.sections[-1][2] == arr.n_bars
    assert {k for k, _, _ in arr.sections} >= {"intro", "verse", "chorus"}
    assert 85 <= arr.bpm <= 140


def test_cli_synth_kind_sampled(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "out"), "--kind", "sampled", "--n-songs", "1",
               "--seconds", "2", "--tracks", "6", "--master-bus", "1"])
    assert rc == 0
    meta = json.loads((tmp_path / "out" / "SampledSong001" / "sampled.json").read_text())
    assert meta["master_bus"] is not None and len(meta["parts"]) == 6
    assert meta["engineer"]["style"] == "pop"
    assert main(["synth", str(tmp_path / "rock"), "--n-songs", "1", "--seconds", "2",
                 "--tracks", "6", "--engineer", "rock", "--inconsistency", "0"]) == 0
    meta = json.loads((tmp_path / "rock" / "SampledSong001" / "sampled.json").read_text())
    assert meta["engineer"]["style"] == "rock" and meta["engineer"]["inconsistency_db"] == 0
    assert main(["synth", str(tmp_path / "bad2"), "--engineer", "jazz"]) == 2
    assert "unknown engineer style 'jazz'" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "bad"), "--kind", "sampled", "--tracks", "2"]) == 2
    assert "n_tracks" in capsys.readouterr().err
