"""The engineer's rules, each on stems built to trigger it, and its measures."""

import math

import numpy as np
import pytest

from mixing_env.engineer import Engineer, analyse_stems, get_style, roles_of, rules
from mixing_env.engineer.analysis import gated_loudness
from mixing_env.errors import ConfigError
from mixing_env.metrics import integrated_loudness

SR, K = 44100, 500


def _tone(freq, n, amp=0.2, seed=None):
    t = np.arange(n) / SR
    y = amp * np.sin(2 * np.pi * freq * t)
    if seed is not None:  # a little noise so spectra are not single lines
        y = y + 0.01 * amp * np.random.default_rng(seed).standard_normal(n)
    return y.astype(np.float32)


def _noise(n, amp, seed, low=None, high=None):
    from scipy.signal import butter, sosfilt

    y = np.random.default_rng(seed).standard_normal(n)
    if low or high:
        kind = "bandpass" if low and high else ("highpass" if low else "lowpass")
        edges = [f for f in (low, high) if f]
        y = sosfilt(butter(4, edges if len(edges) > 1 else edges[0], btype=kind, fs=SR,
                           output="sos"), y)
    return (amp * y / np.std(y)).astype(np.float32)


@pytest.mark.parametrize("seconds", [1.0, 3.0, 7.3])
def test_chunk_gated_loudness_agrees_with_pyloudnorm(seconds):
    n = int(seconds * SR)
    y = _noise(n, 0.1, 1) * np.repeat([1.0, 0.05, 0.6, 0.0], math.ceil(n / 4))[:n]
    a = analyse_stems(y[None], sample_rate=SR, chunk_size=K)
    assert a.loudness[0] == pytest.approx(integrated_loudness(y, sample_rate=SR), abs=0.5)
    assert gated_loudness(np.zeros((1, 100)), chunk_s=K / SR)[0] == -np.inf


def test_analysis_refuses_nan_and_bad_shapes():
    with pytest.raises(ConfigError, match="NaN"):
        analyse_stems(np.full((1, 1000), np.nan), sample_rate=SR, chunk_size=K)
    with pytest.raises(ConfigError, match="n_stems, n_samples"):
        analyse_stems(np.zeros(1000), sample_rate=SR, chunk_size=K)


def test_equal_loudness_start_undoes_recording_levels():
    n = 2 * SR
    stems = np.stack([_noise(n, 0.3, 1), _noise(n, 0.03, 2)])
    a = analyse_stems(stems, sample_rate=SR, chunk_size=K)
    g = rules.equal_loudness(a, ["keys", "keys"], get_style("pop"))
    assert (g[1] - g[0]) == pytest.approx(20.0, abs=0.3)  # the quiet stem comes up 20 dB


def test_brighter_stem_of_a_role_sits_lower():
    n = 2 * SR
    dark, bright = _noise(n, 0.1, 1, high=800), _noise(n, 0.1, 2, low=3000)
    a = analyse_stems(np.stack([dark, bright]), sample_rate=SR, chunk_size=K)
    g = rules.brightness(a, ["guitar", "guitar"], get_style("pop"))
    assert a.centroid_oct[1] - a.centroid_oct[0] > 1.5
    assert g[0] - g[1] == pytest.approx(5.0 * (a.centroid_oct[1] - a.centroid_oct[0]))


def test_a_bus_of_many_parts_comes_down_part_by_part():
    n = 2 * SR
    drums = _noise(n, 0.1, 1)

    def band_level(n_parts):
        stems = np.stack([drums] + [_noise(n, 0.1, 10 + k) for k in range(n_parts)])
        roles = ["snare"] + ["keys"] * n_parts
        a = analyse_stems(stems, sample_rate=SR, chunk_size=K)
        g = rules.equal_loudness(a, roles, get_style("pop"))
        g = g + rules.bus_balance(a, roles, get_style("pop"), g)
        return g[1] + a.loudness[1] - (g[0] + a.loudness[0])

    one, four = band_level(1), band_level(4)
    assert one - four == pytest.approx(10 * np.log10(4), abs=0.3)  # the bus keeps its place


def test_a_lead_the_band_masks_is_raised_and_more_so_in_dense_passages():
    n = 3 * SR
    lead = _noise(n, 0.1, 0, low=200, high=3000)
    bass = _noise(n, 0.1, 3, high=100)
    covering = _noise(n, 0.1, 1, low=300, high=600)  # the lead's range, concentrated
    elsewhere = _noise(n, 0.1, 2, low=6000, high=9000)  # far above it
    pop = get_style("pop")

    def lead_over(part):
        stems = np.stack([part, bass, lead])
        roles = ["keys", "bass", "lead"]
        a = analyse_stems(stems, sample_rate=SR, chunk_size=K)
        g = rules.equal_loudness(a, roles, pop)
        _, _, decided = rules.lead_placement(a, roles, pop, g)
        return decided

    masked, clear = lead_over(covering), lead_over(elsewhere)
    assert masked["lead_masked_share"] > clear["lead_masked_share"] + 0.15
    assert masked["lead_over_db"] - clear["lead_over_db"] == pytest.approx(
        pop.lead_masking_db * (masked["lead_masked_share"] - clear["lead_masked_share"]))

    # Density: the same lead over 1 then 6 accompanying parts (beyond kick, snare, bass).
    half = n // 2
    parts = [_noise(n, 0.05, 20 + k, low=200, high=4000) for k in range(6)]
    for p in parts[1:]:
        p[:half] = 0.0  # five parts join halfway
    stems = np.stack([*parts, lead])
    roles = ["keys"] * 6 + ["lead"]
    a = analyse_stems(stems, sample_rate=SR, chunk_size=K)
    g = rules.equal_loudness(a, roles, pop)
    _, moves, _ = rules.lead_placement(a, roles, get_style("pop").__class__(
        **{**pop.__dict__, "ride_strength": 0.0}), g)
    T = a.n_chunks
    first, second = moves[T // 8 : 3 * T // 8].mean(), moves[5 * T // 8 : 7 * T // 8].mean()
    expected = np.diff(np.clip(pop.density_db_per_part * (np.array([1, 6]) - rules.PARTS_REFERENCE),
                               -4.0, 4.0))[0]  # the move is clipped to +-4 dB
    assert second - first == pytest.approx(expected, abs=0.3)


def _phrases(n_chunks: int, soft_db: float):
    """A lead singing loud and soft phrases with gaps, a steady keys part and a kick."""
    t = np.arange(n_chunks * K) / SR
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    phrase = (np.arange(n_chunks) // 120) % 4  # 0 loud, 1 gap, 2 soft, 3 gap
    amp = np.select([phrase == 0, phrase == 2], [1.0, 10 ** (soft_db / 20)], 0.0)
    lead = tone * np.repeat(amp, K).astype(np.float32) * 0.3
    keys = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    kick = (0.3 * np.sin(2 * np.pi * 60 * t)).astype(np.float32)
    return np.stack([kick, keys, lead]), phrase


@pytest.mark.parametrize("style", ["pop", "rock"])
def test_rides_lift_soft_phrases_and_the_band_ducks_under_the_lead(style):
    stems, phrase = _phrases(960, soft_db=-8.0)
    s = get_style(style)
    mix = Engineer(style, 0.0).mix(stems, ["kick", "keys", "lead"], sample_rate=SR,
                                   chunk_size=K)
    g = mix.gains_db
    core = np.arange(960) % 120 >= 60  # the second half of each phrase: smoothing settled
    loud, soft = core & (phrase == 0), core & (phrase == 2)
    assert g[2, soft].mean() - g[2, loud].mean() > 0.6 * 8.0 * s.ride_strength
    gap = core & (phrase % 2 == 1)
    dip = g[1, gap].mean() - g[1, core & (phrase % 2 == 0)].mean()
    assert dip == pytest.approx(s.duck_db, abs=0.25)
    assert np.ptp(g[0]) < 1e-9  # the kick neither rides nor ducks


def test_a_part_left_alone_in_a_sparse_section_comes_up():
    n = 6 * SR
    piano = _noise(n, 0.1, 1, low=200, high=2000)
    organ = _noise(n, 0.1, 2, low=200, high=2000)
    organ[: n // 2] = 0.0  # the organ joins for the second half (a chorus)
    stems = np.stack([piano, organ])
    mix = Engineer("pop", 0.0).mix(stems, ["keys", "keys"], sample_rate=SR, chunk_size=K)
    T = mix.gains_db.shape[1]
    verse, chorus = mix.gains_db[0, T // 8 : 3 * T // 8], mix.gains_db[0, 5 * T // 8 : 7 * T // 8]
    # Alone the piano carries the band bus: section_strength of the 3 dB swing comes back.
    assert verse.mean() - chorus.mean() == pytest.approx(
        get_style("pop").section_strength * 10 * np.log10(2), abs=0.4)


def test_kick_is_set_against_the_bass_in_the_low_end():
    n = 2 * SR
    kick = _noise(n, 0.2, 1, high=120)
    deep_bass, thin_bass = _noise(n, 0.2, 2, high=100), _noise(n, 0.2, 3, low=300, high=1200)
    pop = get_style("pop")

    def kick_move(bass):
        a = analyse_stems(np.stack([kick, bass]), sample_rate=SR, chunk_size=K)
        g = rules.equal_loudness(a, ["kick", "bass"], pop)
        return rules.kick_against_bass(a, ["kick", "bass"], pop, g)[0]

    # A bass that fills the bottom pushes the kick up to sit over it; a thin one does not.
    assert kick_move(deep_bass) > kick_move(thin_bass) + 2.0


def test_inconsistency_is_a_per_stem_offset_of_the_given_size():
    stems, _ = _phrases(480, soft_db=-4.0)
    roles = ["kick", "keys", "lead"]
    exact = Engineer("pop", 0.0).mix(stems, roles, sample_rate=SR, chunk_size=K).gains_db
    offsets = []
    for seed in range(200):
        g = Engineer("pop", 1.5).mix(stems, roles, sample_rate=SR, chunk_size=K,
                                     rng=np.random.default_rng(seed)).gains_db
        d = g - exact
        assert np.ptp(d, axis=1).max() < 1e-9  # constant over the song
        offsets.append(d[:, 0])
    assert np.std(offsets) == pytest.approx(1.5, rel=0.1)
    with pytest.raises(ConfigError, match="rng"):
        Engineer("pop", 1.0).mix(stems, roles, sample_rate=SR, chunk_size=K)


def test_styles_differ_and_bad_values_are_named():
    stems, _ = _phrases(480, soft_db=-4.0)
    roles = ["kick", "keys", "lead"]
    pop = Engineer("pop", 0.0).mix(stems, roles, sample_rate=SR, chunk_size=K)
    rock = Engineer("rock", 0.0).mix(stems, roles, sample_rate=SR, chunk_size=K)
    # pop is vocal-forward: it rides its lead harder and ducks its band deeper.
    assert np.ptp(pop.gains_db[2]) > np.ptp(rock.gains_db[2]) + 1
    assert np.ptp(pop.gains_db[1]) > np.ptp(rock.gains_db[1]) + 1
    with pytest.raises(ConfigError, match="unknown engineer style 'jazz'"):
        Engineer("jazz")
    with pytest.raises(ConfigError, match="inconsistency"):
        Engineer("pop", -1.0)


def test_roles_come_from_the_stem_names_with_one_lead():
    assert roles_of(["01_Kick.wav", "04_Bass.wav", "05_SynthPad.wav", "09_LeadVox.wav",
                     "10_LeadVox2.wav", "11_BackingVox1.wav"]) == [
        "kick", "bass", "pad", "lead", "backing", "backing"]
    assert roles_of(["Kick.wav", "Sax.wav", "Piano.wav"])[1] == "lead"  # nothing is sung
    assert roles_of(["Kick.wav", "SynthLead.wav"])[1] == "lead"
    assert "lead" not in roles_of(["Kick.wav", "Snare.wav"])


def test_a_part_the_band_buries_comes_up():
    n = 2 * SR
    band = [_noise(n, 0.2, 1, low=300, high=3000), _noise(n, 0.2, 2, low=300, high=3000)]
    pop = get_style("pop")

    def lift(part):
        stems = np.stack([*band, part])
        roles = ["guitar", "guitar", "keys"]
        a = analyse_stems(stems, sample_rate=SR, chunk_size=K)
        g = rules.equal_loudness(a, roles, pop)
        return rules.unmask(a, roles, pop, g)[2], rules.masking_index(a, g, np.array([2]))[0]

    (buried_lift, buried), (clear_lift, clear) = (
        lift(_noise(n, 0.2, 3, low=500, high=2000)), lift(_noise(n, 0.2, 4, low=6000)))
    assert buried > clear + 0.5
    expected = [np.clip(pop.unmask_db * (x - rules.MASKING_REFERENCE["keys"]), -6, 6)
                for x in (buried, clear)]
    assert (buried_lift, clear_lift) == pytest.approx(expected)
    assert buried_lift > clear_lift + 3
