import warnings

import librosa
import numpy as np
import pytest

from mixing_env.errors import ConfigError
from mixing_env.features import N_MELS, ChunkLogMel, ChunkMFCC


@pytest.fixture(scope="module")
def mfcc() -> ChunkMFCC:
    return ChunkMFCC(44100, 500, 13)


@pytest.mark.parametrize("level", [1.0, 1e-2, 1e-5, 0.0], ids=["loud", "quiet", "faint", "silent"])
def test_matches_librosa(mfcc, level):
    rng = np.random.default_rng(0)
    y = (level * rng.standard_normal(500)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no empty mel filter, no other librosa warning
        ref = librosa.feature.mfcc(y=y, sr=44100, **mfcc.librosa_kwargs)
    assert ref.shape == (13, 1)
    ours = mfcc(y)
    assert ours.shape == (13,)
    np.testing.assert_allclose(ours, ref[:, 0], rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_batch_equals_one_by_one(mfcc):
    rng = np.random.default_rng(1)
    y = rng.standard_normal((2, 3, 500)).astype(np.float32) * np.array([1, 1e-3, 0])[:, None]
    batch = mfcc(y)
    assert batch.shape == (2, 3, 13)
    for i in range(2):
        for j in range(3):
            ref = librosa.feature.mfcc(y=y[i, j], sr=44100, **mfcc.librosa_kwargs)[:, 0]
            np.testing.assert_allclose(batch[i, j], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_mfcc_bound_holds(mfcc):
    rng = np.random.default_rng(2)
    y = np.clip(rng.standard_normal((50, 500)) * 3, -1, 1)
    assert np.all(np.abs(mfcc(y)) <= mfcc.max_abs(1.0))


def test_logmel_is_absolute():
    logmel = ChunkLogMel(44100, 500, 32)
    y = np.random.default_rng(3).standard_normal(500)
    loud, quiet, silent = logmel(y), logmel(0.5 * y), logmel(np.zeros(500))
    assert loud.shape == (32,)
    np.testing.assert_allclose(loud - quiet, 20 * np.log10(2), atol=1e-3)  # not normalized
    np.testing.assert_array_equal(silent, -100.0)
    assert loud.max() <= logmel.max_db(np.abs(y).max())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_mels": 200}, "empty mel filters"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
    ids=["too-many-mels", "zero-chunk"],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa's own empty-filter warning
        ChunkLogMel(**{"sample_rate": 44100, "chunk_size": 500, "n_mels": N_MELS, **kwargs})


def test_wrong_chunk_length(mfcc):
    with pytest.raises(ConfigError, match="chunk_size=500"):
        mfcc(np.zeros(499))
