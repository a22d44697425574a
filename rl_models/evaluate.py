"""Evaluate a trained checkpoint or a baseline on a dataset: a table, JSON, CSV and plots.

Every policy, agent or baseline, is run through :class:`MixingEnv` one whole song per episode,
so the MFCC distance and the reward are the env's own (with its level treatment). The agent acts
deterministically (the Dirichlet mean) and carries its recurrent state across the song. Audio
metrics are computed on the simplex mix ``sum_i g_i[t] x_i[t]`` times one least-squares make-up
gain per song (a simplex sets the balance, not the overall level).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.errors import CheckpointError, ConfigError
from rl_models.checkpoints import find_checkpoint
from rl_models.checkpoints import load_policy as load_checkpoint

__all__ = [
    "BASELINES",
    "METRIC_COLUMNS",
    "ModulePolicy",
    "BaselinePolicy",
    "EpisodeRecord",
    "make_baseline",
    "find_checkpoint",
    "load_checkpoint",
    "song_names",
    "run_episode",
    "score_episode",
    "evaluate_policy",
    "evaluate",
    "write_table",
    "format_table",
]

BASELINES = ("equal", "loudness", "oracle", "static_oracle")
"""Baseline names accepted wherever a checkpoint is."""

METRIC_COLUMNS = (
    "mfcc_distance", "reward", "mrstft", "si_sdr_db", "lufs_diff",
    "gain_err_median_db", "gain_err_mean_db",
)
"""The table's metric columns, in order."""


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------
class BaselinePolicy:
    """A baseline from :mod:`mixing_env.baselines` behind the same interface as the agent."""

    def __init__(self, name: str, policy: Any):
        self.name = name
        self.policy = policy

    def reset(self) -> None:
        """Baselines keep no state between songs."""

    def act(self, obs: dict, env: Any) -> np.ndarray:
        """The baseline's gains for the env's current chunk."""
        return np.asarray(self.policy.act(env), dtype=np.float32)


def make_baseline(name: str) -> BaselinePolicy:
    """``equal`` | ``loudness`` | ``oracle`` | ``static_oracle`` as a policy.

    Raises:
        ConfigError: An unknown name.
    """
    from mixing_env import baselines

    classes = {"equal": "EqualGains", "loudness": "LoudnessGains", "oracle": "OraclePolicy",
               "static_oracle": "StaticOracle"}
    if name not in classes:
        raise ConfigError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")
    return BaselinePolicy(name, getattr(baselines, classes[name])())


class ModulePolicy:
    """Drives an RLlib RLModule deterministically (the distribution's mean), one chunk a step.

    The observation gets a batch axis, and a time axis when the module is stateful (as RLlib's
    env-to-module connectors do at inference); the state is carried from step to step.

    Args:
        module: The RLModule (e.g. from :func:`load_checkpoint`).
        name: Row label in tables.
    """

    def __init__(self, module: Any, name: str = "agent"):
        self.module = module
        self.name = name
        self.state = None

    def reset(self) -> None:
        """Starts a new song: the module's initial state."""
        import torch
        import tree

        if self.module.is_stateful():
            self.state = tree.map_structure(
                lambda s: torch.as_tensor(np.asarray(s))[None], self.module.get_initial_state()
            )

    def act(self, obs: dict, env: Any = None) -> np.ndarray:
        """The module's deterministic action for one observation."""
        import torch
        import tree
        from ray.rllib.core.columns import Columns

        stateful = self.module.is_stateful()
        expand = (lambda x: torch.tensor(np.asarray(x))[None, None]) if stateful else (
            lambda x: torch.tensor(np.asarray(x))[None])
        batch = {Columns.OBS: tree.map_structure(expand, obs)}
        if stateful:
            batch[Columns.STATE_IN] = self.state
        with torch.no_grad():
            out = self.module.forward_inference(batch)
        if stateful:
            self.state = out[Columns.STATE_OUT]
        dist = self.module.get_inference_action_dist_cls().from_logits(
            out[Columns.ACTION_DIST_INPUTS]
        ).to_deterministic()
        action = dist.sample().detach().cpu().numpy()
        return np.asarray(action, dtype=np.float32).reshape(-1)


# --------------------------------------------------------------------------------------------
# Running and scoring
# --------------------------------------------------------------------------------------------
@dataclass
class EpisodeRecord:
    """What one policy did on one song (T valid chunks)."""

    song: Any
    gains: np.ndarray  # (C, T) gains the env applied (on the simplex)
    mfcc_distance: np.ndarray  # (T,)
    reward: np.ndarray  # (T,)


def song_names(env_config: dict) -> list[str]:
    """Names of the songs an env config covers (its ``songs`` subset, else all)."""
    from mixing_env.envs.config import EnvConfig

    cfg = EnvConfig.from_dict(env_config)
    if cfg.songs is not None:
        return list(cfg.songs)
    if cfg.dataset_dir is not None:
        from mixing_env.data.cache import PreparedDataset

        return list(PreparedDataset(cfg.dataset_dir).names)
    from mixing_env.data.synthetic import synthetic_songs
    from mixing_env.envs.config import DEFAULT_SYNTHETIC

    return [s.name for s in synthetic_songs(**dict(cfg.synthetic or DEFAULT_SYNTHETIC))]


def run_episode(env_config: dict, song: str, policy: Any, *, songs: list | None = None
                ) -> EpisodeRecord:
    """Plays one whole song through a fresh MixingEnv with ``policy``.

    Args:
        env_config: EnvConfig dict (dataset, features, reward settings).
        song: Name of the song to play.
        policy: A :class:`ModulePolicy` or :class:`BaselinePolicy`.
        songs: In-memory Song objects to play instead of the config's dataset.
    """
    from mixing_env.envs.mixing_env import MixingEnv

    env = MixingEnv({**env_config, "songs": [song], "episode_chunks": None}, songs=songs)
    obs, _ = env.reset(seed=0, options={"song": song, "start": 0})
    policy.reset()
    gains, distances, rewards = [], [], []
    song_obj = env.song
    done = False
    while not done:
        action = policy.act(obs, env)
        obs, reward, terminated, truncated, info = env.step(action)
        gains.append(np.asarray(info["gains"], dtype=np.float64))
        distances.append(float(info["mfcc_distance"]))
        rewards.append(float(reward))
        done = terminated or truncated
    env.close()
    return EpisodeRecord(song=song_obj, gains=np.stack(gains, axis=1),
                         mfcc_distance=np.asarray(distances), reward=np.asarray(rewards))


def score_episode(record: EpisodeRecord) -> dict[str, float]:
    """The table's metrics for one episode (see :data:`METRIC_COLUMNS`)."""
    from mixing_env import metrics

    song = record.song
    n = record.gains.shape[1]
    stems = np.asarray(song.stems[:, :n], dtype=np.float64)
    reference = np.asarray(song.reference[:n], dtype=np.float64).reshape(-1)
    mix = metrics.render_mix(stems, record.gains)
    mix = mix * metrics.least_squares_gain(mix, reference)
    row = {
        "mfcc_distance": float(record.mfcc_distance.mean()),
        "reward": float(record.reward.mean()),
        "mrstft": metrics.multi_resolution_stft_distance(estimate=mix, reference=reference),
        "si_sdr_db": metrics.si_sdr(estimate=mix, reference=reference),
        "lufs_diff": metrics.loudness_difference_lufs(
            estimate=mix, reference=reference, sample_rate=song.sample_rate),
        "gain_err_median_db": math.nan,
        "gain_err_mean_db": math.nan,
    }
    if song.true_gains is not None:
        err = metrics.gain_error_db(
            estimated=record.gains,
            true=np.asarray(song.true_gains)[:, :n],
            track_mask=song.track_mask,
            active=metrics.active_chunks(stems, track_mask=song.track_mask),
        )
        row["gain_err_median_db"] = err["median_db"]
        row["gain_err_mean_db"] = err["mean_db"]
    return row


def evaluate_policy(policy: Any, *, env_config: dict, songs: list[str] | None = None,
                    records: list | None = None) -> dict[str, float]:
    """Mean MFCC distance and mean reward of ``policy`` over the songs (the training metric)."""
    distances, rewards = [], []
    for name in songs or song_names(env_config):
        rec = run_episode(env_config, name, policy)
        if records is not None:
            records.append(rec)
        distances.append(rec.mfcc_distance.mean())
        rewards.append(rec.reward.mean())
    return {"mfcc_distance": float(np.mean(distances)), "reward": float(np.mean(rewards))}


def _policy_for(spec: str) -> tuple[Any, dict | None]:
    if spec in BASELINES:
        return make_baseline(spec), None
    if not Path(spec).exists():
        raise ConfigError(f"policy {spec!r} is neither a baseline {list(BASELINES)} "
                          f"nor an existing checkpoint path")
    module, meta = load_checkpoint(spec)
    return ModulePolicy(module, name=Path(meta["checkpoint"]).name), meta


def evaluate(policies: list[str], *, env_config: dict | None = None, out_dir: str | Path,
             plots: bool = True, progress: bool = True) -> list[dict]:
    """Evaluates each policy (checkpoint path or baseline name) on every song of a dataset.

    Args:
        policies: Checkpoint paths and/or baseline names.
        env_config: The dataset and env settings (``dataset_dir`` or ``synthetic``, ...). For a
            checkpoint, the env settings it was trained with come first and these override.
        out_dir: Where ``evaluation.json``, ``evaluation.csv`` and ``plots/`` go.
        plots: Write PNG plots.
        progress: Show a progress bar.

    Returns:
        The table rows: one per (policy, song) and one ``song="MEAN"`` row per policy.
    """
    from tqdm import tqdm

    env_config = dict(env_config or {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = [(spec, *_policy_for(spec)) for spec in policies]
    rows: list[dict] = []
    by_policy: dict[str, list[EpisodeRecord]] = {}
    names = None
    # Baselines play the same songs as the (first) checkpoint unless a dataset is given.
    base = next((m["experiment"]["env"] for _, _, m in loaded if m), {})
    for spec, policy, meta in loaded:
        cfg = {**(meta["experiment"]["env"] if meta else base), **env_config}
        if ({"dataset_dir", "synthetic"} & set(env_config)) and "songs" not in env_config:
            cfg.pop("songs", None)  # a new dataset: the training subset does not apply
        names = song_names(cfg)
        label = policy.name if meta is None else spec
        recs: list[EpisodeRecord] = []
        for name in tqdm(names, desc=f"evaluate {Path(label).name}", disable=not progress):
            rec = run_episode(cfg, name, policy)
            _check_layout(rec, meta)
            recs.append(rec)
            rows.append({"policy": label, "song": name, **score_episode(rec)})
        by_policy[label] = recs
        mean = {c: float(np.nanmean([r[c] for r in rows if r["policy"] == label]))
                if any(not math.isnan(r[c]) for r in rows if r["policy"] == label) else math.nan
                for c in METRIC_COLUMNS}
        rows.append({"policy": label, "song": "MEAN", **mean})
    _add_gap_closed(rows)
    write_table(rows, out_dir)
    if plots:
        from rl_models.plots import plot_evaluation

        plot_evaluation(by_policy, out_dir / "plots")
    return rows


def _check_layout(rec: EpisodeRecord, meta: dict | None) -> None:
    if meta and list(rec.song.slot_names) != list(meta["slot_names"]):
        raise CheckpointError(
            f"checkpoint {meta['checkpoint']} was trained on slots {meta['slot_names']}, "
            f"but song {rec.song.name!r} has slots {list(rec.song.slot_names)}"
        )


def _add_gap_closed(rows: list[dict]) -> None:
    from mixing_env.metrics import gap_closed

    means = {r["policy"]: r for r in rows if r["song"] == "MEAN"}
    if "equal" not in means or "oracle" not in means:
        return
    for r in means.values():
        r["gap_closed"] = gap_closed(d_agent=r["mfcc_distance"],
                                     d_equal=means["equal"]["mfcc_distance"],
                                     d_oracle=means["oracle"]["mfcc_distance"])


def write_table(rows: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``evaluation.json`` and ``evaluation.csv`` (NaN as empty CSV cells / JSON null)."""
    out_dir = Path(out_dir)
    columns = ["policy", "song", *METRIC_COLUMNS, "gap_closed"]
    clean = [{c: (None if isinstance(r.get(c), float) and math.isnan(r[c]) else r.get(c))
              for c in columns} for r in rows]
    json_path = out_dir / "evaluation.json"
    json_path.write_text(json.dumps({"columns": columns, "rows": clean}, indent=2))
    csv_path = out_dir / "evaluation.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in clean:
            writer.writerow({c: "" if r[c] is None else r[c] for c in columns})
    return json_path, csv_path


def format_table(rows: list[dict], *, means_only: bool = False) -> str:
    """A fixed-width text table of the rows."""
    columns = ["policy", "song", *METRIC_COLUMNS]
    if any("gap_closed" in r for r in rows):
        columns.append("gap_closed")
    shown = [r for r in rows if r["song"] == "MEAN"] if means_only else rows

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(Path(str(v)).name)

    table = [columns] + [[cell(r.get(c)) for c in columns] for r in shown]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) if i > 1 else v.ljust(w)
                               for i, (v, w) in enumerate(zip(row, widths, strict=True)))
                     for row in table)
