"""Sampled songs: General MIDI stems, their names, and the mixing model's gains."""

import json

import numpy as np
import pytest

from mixing_env.data.prepare import prepare_dataset
from mixing_env.data.sampled import generate_sampled_song, make_sampled_dataset
from mixing_env.data.sampled.arrangement import Arrangement
from mixing_env.data.sampled.master_bus import MasterBus, apply_master_bus
from mixing_env.data.sampled.mixing_model import ROLE_LEVEL_DB, mix_gains_db
from mixing_env.data.sampled.parts import LEADS, PARTS, choose_parts
from mixing_env.data.sampled.renderer import render_part
from mixing_env.data.sampled.songs import MAX_STEMS
from mixing_env.data.synthetic import generate_song
from mixing_env.data.taxonomy import Taxonomy
from mixing_env.errors import ConfigError
from mixing_env.metrics import integrated_loudness
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
    # Gains undo the levels: the same reference, the same mixing decisions.
    np.testing.assert_allclose(natural.reference, song.reference, atol=1e-5)
    for key in ("target_lu_vs_lead", "duck_db", "section_scale"):
        assert natural.meta["mixing"][key] == song.meta["mixing"][key]


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
    assert {p.role for p in PARTS + LEADS} <= set(ROLE_LEVEL_DB)


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


def _phrases(n_chunks: int, soft_db: float):
    """A lead singing loud and soft phrases with gaps, and a steady competing part."""
    t = np.arange(n_chunks * K) / SR
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    phrase = (np.arange(n_chunks) // 120) % 4  # 0 loud, 1 gap, 2 soft, 3 gap
    amp = np.select([phrase == 0, phrase == 2], [1.0, 10 ** (soft_db / 20)], 0.0)
    lead = tone * np.repeat(amp, K).astype(np.float32) * 0.3
    keys = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    kick = (0.3 * np.sin(2 * np.pi * 60 * t)).astype(np.float32)
    return np.stack([kick, keys, lead]), phrase


def test_lead_riding_lifts_soft_phrases_and_competing_parts_duck():
    stems, phrase = _phrases(960, soft_db=-8.0)
    ducked = 0
    for seed in range(8):
        gains, dec = mix_gains_db(stems, roles=["kick", "keys", "lead"],
                                  chunk_sections=np.full(960, "verse"),
                                  rng=np.random.default_rng(seed), sample_rate=SR, chunk_size=K)
        core = np.arange(960) % 120 >= 60  # the second half: smoothing has settled
        loud, soft = core & (phrase == 0), core & (phrase == 2)
        lift = gains[2, soft].mean() - gains[2, loud].mean()
        assert lift > 0.4 * 8.0 * dec.ride_strength, (seed, lift)
        gap = core & (phrase % 2 == 1)
        dip = gains[1, gap].mean() - gains[1, core & (phrase % 2 == 0)].mean()
        if dec.duck_db[1] > 0:
            ducked += 1
            assert dip > 0.75 * dec.duck_db[1], (seed, dip, dec.duck_db[1])
        else:
            assert abs(dip) < 0.2
        assert np.ptp(gains[0]) < 1e-9  # the kick neither rides nor ducks in one section
    assert ducked >= 3


def test_riding_is_visible_in_a_rendered_song(song):
    (lead,) = _role_index(song, "lead")
    T = song.true_gains.shape[1]
    x = np.zeros(T * K)
    x[: song.stems.shape[1]] = song.stems[lead]
    level = 10 * np.log10(np.convolve((x.reshape(T, K) ** 2).mean(1), np.ones(35) / 35, "same")
                          + 1e-20)
    on = level > level.max() - 15
    gain = 20 * np.log10(song.true_gains[lead])
    assert np.corrcoef(level[on], gain[on])[0, 1] < -0.3


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
    assert main(["synth", str(tmp_path / "bad"), "--kind", "sampled", "--tracks", "2"]) == 2
    assert "n_tracks" in capsys.readouterr().err
