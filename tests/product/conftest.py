"""Tiny data and one tiny training run shared by the product tests (module scope: built once)."""

from __future__ import annotations

import pytest

from rl_models.app import cli

# A model and batch small enough that an iteration takes a second or two on 2 cores.
TINY = [
    "training.train_batch_size_per_learner=64",
    "training.minibatch_size=32",
    "training.num_epochs=1",
    "model.hidden_size=4",
    "model.attention_dim=4",
    "model.embed_dim=4",
    "model.max_seq_len=4",
    "env.episode_chunks=16",
    "env_runners.num_envs_per_env_runner=2",  # episodes end within a 64-step batch
]


def run_cli(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="session")
def product_songs(tmp_path_factory):
    """Two synthetic 1-second songs with 3 tracks, written by ``deepmixing synth``."""
    out = tmp_path_factory.mktemp("songs")
    assert run_cli("synth", out, "--kind", "procedural", "--n-songs", 2, "--seconds", 1,
                   "--tracks", 3, "--seed", 3) == 0
    return out


@pytest.fixture(scope="session")
def product_cache(product_songs, tmp_path_factory):
    """The songs prepared by ``deepmixing prepare``."""
    out = tmp_path_factory.mktemp("cache") / "cache"
    assert run_cli("prepare", product_songs, out, "--no-progress") == 0
    return out


@pytest.fixture(scope="session")
def trained(product_cache, ray_session, tmp_path_factory):
    """``deepmixing train quickstart`` for 2 tiny iterations on song 1, evaluated on song 2."""
    from mixing_env.data.cache import PreparedDataset

    names = PreparedDataset(product_cache).names
    storage = tmp_path_factory.mktemp("runs")
    assert run_cli(
        "train", "quickstart", "--storage-path", storage, "--name", "tiny", "--verbose", 0,
        "--set", f"env.dataset_dir={product_cache}", "--set", f"env.songs=[{names[0]}]",
        "--set", f"evaluation.env.dataset_dir={product_cache}",
        "--set", f"evaluation.env.songs=[{names[1]}]",
        "--set", "evaluation.interval=1", "--set", "stop.training_iteration=2",
        "--set", "checkpoint.frequency=1",
        *[x for o in TINY for x in ("--set", o)],
    ) == 0
    return storage / "tiny"


@pytest.fixture(scope="session")
def tiny_sets():
    """``--set`` arguments for a tiny model and batch."""
    return [x for o in TINY for x in ("--set", o)]


@pytest.fixture(scope="session")
def deepmixing():
    """Runs the CLI in-process and returns its exit status."""
    return run_cli
