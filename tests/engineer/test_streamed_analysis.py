"""The engineer's analysis and listening block of a song fed window by window equal the bulk."""

import numpy as np
import pytest

from mixing_env.data.slots import default_layout
from mixing_env.engineer.analysis import (
    SPECTRUM_HOP_CHUNKS,
    KWeightedPowerStream,
    StemAnalysisStream,
    analyse_stems,
    frame_power,
    k_weighted_power,
)
from mixing_env.engineer.listening import SongListening, listening_features
from mixing_env.engineer.roles import slot_roles
from mixing_env.errors import ConfigError

SR, K = 44100, 500


def song(n_chunks: int, seed: int = 0) -> np.ndarray:
    """Five stems [shape=(5, n_chunks * K)]: noise growing louder to its end, a tone that rests,
    silence, a stem loud at first and 40 dB down after, and one quiet for its first half."""
    rng = np.random.default_rng(seed)
    n = n_chunks * K
    t = np.arange(n) / SR
    x = np.empty((5, n), np.float32)
    x[0] = rng.standard_normal(n) * np.linspace(0.001, 1.0, n) ** 2
    x[1] = 0.3 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 2 * t) > 0.3)
    x[2] = 0.0
    x[3] = 0.5 * rng.standard_normal(n) * np.where(t < t[-1] / 4, 1.0, 0.01)
    x[4] = 0.2 * rng.standard_normal(n) * np.where(t < t[-1] / 2, 1e-4, 1.0)
    return x


def fed(x: np.ndarray, window_chunks: int) -> StemAnalysisStream:
    n_chunks = x.shape[1] // K
    stream = StemAnalysisStream(len(x), n_chunks=n_chunks, sample_rate=SR, chunk_size=K)
    for start in range(0, n_chunks, window_chunks):
        w = min(window_chunks, n_chunks - start)
        stream.add(x[:, start * K : (start + w) * K].reshape(len(x), w, K))
    return stream


@pytest.mark.parametrize("window_chunks", [1, 7, 128])
def test_k_weighted_power_fed_in_blocks_equals_the_whole_stems(window_chunks):
    x = song(301)
    stream = KWeightedPowerStream(len(x), sample_rate=SR, chunk_size=K)
    blocks = [stream(x[:, s * K : (s + window_chunks) * K]) for s in range(0, 301, window_chunks)]
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1),
                                  k_weighted_power(x, sample_rate=SR, chunk_size=K))
    with pytest.raises(ConfigError, match="whole chunks"):
        stream(x[:, : K + 1])


@pytest.mark.parametrize(("n_chunks", "window_chunks"),
                         [(600, 128), (601, 7), (603, 64), (30, 128), (5, 2)],
                         ids=["frames-fit", "odd", "last-frame-past-the-end", "short", "tiny"])
def test_the_streamed_analysis_equals_the_bulk_one(n_chunks, window_chunks):
    x = song(n_chunks)
    bulk = analyse_stems(x, sample_rate=SR, chunk_size=K)
    stream = fed(x, window_chunks)
    mine = stream.result()
    for field in ("power", "active", "loudness"):  # bit for bit
        np.testing.assert_array_equal(getattr(mine, field), getattr(bulk, field), err_msg=field)
    # To float32 rounding: analyse_stems sums the frames in float32, the stream their mel power.
    np.testing.assert_allclose(mine.spectrum, bulk.spectrum, rtol=1e-5, atol=0)
    np.testing.assert_allclose(mine.centroid_oct, bulk.centroid_oct, rtol=0, atol=1e-6)
    assert (mine.spectrum[2] == 0).all() and (mine.spectrum[[0, 1, 3, 4]].sum(axis=1) > 0).all()


def test_a_frames_power_is_librosas_bit_for_bit():
    import librosa

    x = song(100)
    frames = np.lib.stride_tricks.sliding_window_view(x, 2048, axis=-1)[:, ::2000]
    stft = librosa.stft(x, n_fft=2048, hop_length=2000, center=False)
    np.testing.assert_array_equal(frame_power(frames), (np.abs(stft) ** 2).transpose(0, 2, 1))


def test_frames_that_cannot_count_are_let_go():
    x = song(2400)  # stem 3 is 40 dB down after its first quarter: its frames there never count
    stream = fed(x, 128)
    frames = -(-2400 // SPECTRUM_HOP_CHUNKS)
    assert stream.kept_frames < 0.6 * 5 * frames  # of 5 stems, 1 silent and 1 mostly quiet
    mine, bulk = stream.result(), analyse_stems(x, sample_rate=SR, chunk_size=K)
    np.testing.assert_allclose(mine.spectrum, bulk.spectrum, rtol=1e-5)


def test_a_stream_refuses_more_chunks_than_the_song_and_an_early_result():
    x = song(10)
    stream = StemAnalysisStream(5, n_chunks=10, sample_rate=SR, chunk_size=K)
    stream.add(x[:, : 6 * K].reshape(5, 6, K))
    with pytest.raises(ConfigError, match="10 chunks; 6 were fed"):
        stream.result()
    with pytest.raises(ConfigError, match="10 chunks; 12 were fed"):
        stream.add(x[:, : 6 * K].reshape(5, 6, K))


@pytest.mark.parametrize("lead", [True, False], ids=["lead", "no-lead"])
def test_any_range_of_the_listening_block_is_the_whole_songs(lead):
    layout = default_layout()
    names = (["Vocals/Lead#1"] if lead else []) + ["Drums/Kick#1", "Strings/Bass#1",
                                                    "Keys/Piano#1", "Vocals/Backing#1"]
    rows = [layout.index(n) for n in names]
    x = song(400, seed=3)[: len(names)]
    stems = np.zeros((len(layout), 420, K), np.float32)  # 20 chunks of padding
    order = np.argsort(rows)
    stems[np.sort(rows), :400] = x[order].reshape(len(names), 400, K)
    mask = np.zeros(len(layout))
    mask[rows] = 1
    whole = listening_features(stems, slot_names=layout, stem_files={}, track_mask=mask,
                               n_valid=400, sample_rate=SR)
    analysis = analyse_stems(x[order], sample_rate=SR, chunk_size=K)
    listening = SongListening.measure(analysis, slot_roles([names[i] for i in order], {}))
    assert (listening.lead_on != 0).any() == lead
    dummy = np.flatnonzero(mask == 0)[0]
    for start, stop in ((0, 420), (0, 1), (37, 165), (395, 420), (410, 420)):
        block = listening.chunks(start, stop)
        np.testing.assert_array_equal(block[:-1], whole[np.sort(rows), start:stop])
        np.testing.assert_array_equal(block[-1], whole[dummy, start:stop])
