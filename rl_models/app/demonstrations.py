"""Oracle demonstrations in RLlib's offline episode format, for behaviour cloning (BC, MARWIL).

RLlib's new stack reads recorded episodes with ``offline_data(input_read_episodes=True)``: a
Parquet dataset whose column ``item`` holds one ``SingleAgentEpisode.get_state()`` per row,
packed with ``msgpack`` + ``msgpack_numpy`` (what ``OfflineSingleAgentEnvRunner`` writes with
``output_write_episodes=True``). Writing the same thing here lets BC and MARWIL read the
demonstrations with no glue.

A demonstration plays a baseline policy (the oracle by default) through :class:`MixingEnv`, so
its observations - including ``mix_mfcc``, the MFCC of the policy's own previous mix - are
exactly what the agent sees when it acts the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mixing_env.baselines import make_baseline
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.episodes import EpisodeRecord, run_episode
from mixing_env.errors import ConfigError

__all__ = ["record_episodes", "to_rllib_episode", "write_demonstrations", "read_demonstrations"]

ITEM_COLUMN = "item"
"""The Parquet column RLlib's ``OfflinePreLearner`` unpacks episodes from."""


def record_episodes(
    env_config: dict[str, Any],
    *,
    policy: str = "oracle",
    songs: Iterable[str] | None = None,
    episodes_per_song: int = 1,
    seed: int = 0,
) -> Iterator[Any]:
    """Play a baseline policy through the env and yield each episode as RLlib records it.

    Args:
        env_config: :class:`MixingEnv` config (its ``episode_chunks`` sets the episode length).
        policy: A baseline spec of :data:`mixing_env.baselines.BASELINES` (``"oracle"``,
            ``"static_oracle"``, ``"equal"``, ``"loudness"``, ``"instrument_balance=t.json"``).
        songs: Song names to play; None = every song of the env.
        episodes_per_song: Episodes (random windows when ``episode_chunks`` is set) per song.
        seed: Seed of the first reset; later resets draw from the env's generator.

    Yields:
        Finished ``SingleAgentEpisode`` objects (lists, not numpy: RLlib's writer format).
    """
    if not isinstance(episodes_per_song, int) or episodes_per_song < 1:
        raise ConfigError(f"episodes_per_song must be an int >= 1, got {episodes_per_song!r}")
    actor = make_baseline(policy, dataset_dir=env_config.get("dataset_dir"))
    env = MixingEnv(env_config)
    names = list(env.song_names if songs is None else songs)
    env.reset(seed=seed)  # seeds the generator the episodes' windows are drawn from
    for name in names:
        for _ in range(episodes_per_song):
            record = run_episode(env, actor, song=name, keep_observations=True)
            yield to_rllib_episode(record, env.observation_space, env.action_space)


def to_rllib_episode(record: EpisodeRecord, observation_space: Any, action_space: Any) -> Any:
    """An :class:`~mixing_env.episodes.EpisodeRecord` (with observations) as RLlib's episode.

    Raises:
        ConfigError: The record was played without ``keep_observations``.
    """
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    if record.observations is None:
        raise ConfigError("the episode was played without keep_observations=True")
    episode = SingleAgentEpisode(observation_space=observation_space, action_space=action_space)
    episode.add_env_reset(observation=record.observations[0])
    last = record.n_steps - 1
    for k in range(record.n_steps):
        episode.add_env_step(
            record.observations[k + 1], record.actions[:, k], float(record.reward[k]),
            terminated=record.terminated and k == last, truncated=record.truncated and k == last,
        )
    return episode


def write_demonstrations(episodes: Iterable[Any], out_dir: str | os.PathLike) -> Path:
    """Write episodes as a Parquet dataset RLlib's offline API reads (``input_read_episodes``).

    The file is written under a temporary name and renamed, so a reader never sees half of it.

    Args:
        episodes: ``SingleAgentEpisode`` objects (e.g. from :func:`record_episodes`).
        out_dir: Folder to write into (created); pass it as ``offline_data(input_=[out_dir])``.

    Returns:
        The folder.
    """
    import msgpack
    import msgpack_numpy
    import pyarrow as pa
    import pyarrow.parquet as pq

    packed = [msgpack.packb(e.get_state(), default=msgpack_numpy.encode) for e in episodes]
    if not packed:
        raise ConfigError("no episodes to write: the song list is empty")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "demonstrations.parquet"
    tmp = out / ".demonstrations.parquet.tmp"
    pq.write_table(pa.table({ITEM_COLUMN: pa.array(packed, type=pa.binary())}), tmp)
    os.replace(tmp, final)
    return out


def read_demonstrations(path: str | os.PathLike) -> list[Any]:
    """Read the episodes back exactly as RLlib's ``OfflinePreLearner`` decodes them."""
    import msgpack
    import msgpack_numpy
    import pyarrow.parquet as pq
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no demonstration Parquet files in {path}")
    return [
        SingleAgentEpisode.from_state(msgpack.unpackb(item, object_hook=msgpack_numpy.decode))
        for f in files
        for item in pq.read_table(f).column(ITEM_COLUMN).to_pylist()
    ]
