"""Evaluate a trained checkpoint or a baseline on a dataset: a table, JSON, CSV and plots.

Every policy, agent or baseline, is played through :class:`MixingEnv` one whole song per
episode by the one runner (:func:`mixing_env.episodes.run_episode`), so the MFCC distance and
the reward are the env's own (with its level treatment). The agent acts deterministically (the
Dirichlet mean) and carries its recurrent state across the song. Audio metrics are computed on
the simplex mix ``sum_i g_i[t] x_i[t]`` times one least-squares make-up gain per song (a
simplex sets the balance, not the overall level).

Every table row carries ``gap_closed``, the share of the equal-gains-to-oracle gap in MFCC
distance the policy closes (equal gains and the oracle are played as references when they are
not rows themselves), and, when ``instrument_balance`` is a row, ``balance_gap_closed``, the
share of the instrument_balance-to-oracle gap it closes.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mixing_env.baselines import is_baseline, make_baseline
from mixing_env.envs.config import over_songs
from mixing_env.envs.mixing_env import MixingEnv
from mixing_env.envs.song_source import SongSource
from mixing_env.episodes import EpisodeRecord, Policy, run_episode
from mixing_env.errors import CheckpointError, ConfigError
from mixing_env.paths import check_output_folder
from rl_models.app.module_policy import ModulePolicy
from rl_models.checkpoints import PRETRAINED, load_policy

__all__ = [
    "GAP_COLUMNS",
    "METRIC_COLUMNS",
    "EpisodeRecord",
    "play_songs",
    "score_episode",
    "evaluate_policy",
    "evaluate",
    "write_table",
    "format_table",
]

METRIC_COLUMNS = (
    "mfcc_distance", "reward", "mrstft", "si_sdr_db", "lufs_diff",
    "gain_err_median_db", "gain_err_mean_db",
)
"""The table's metric columns, in order."""

GAP_COLUMNS = ("gap_closed", "balance_gap_closed")
"""Shares of the equal-to-oracle and the instrument_balance-to-oracle MFCC-distance gaps."""

_BALANCE = "instrument_balance"


# --------------------------------------------------------------------------------------------
# Running and scoring
# --------------------------------------------------------------------------------------------
def play_songs(policy: Policy, env_config: dict, *, names: list[str] | None = None,
               songs: list | None = None, source: SongSource | None = None
               ) -> list[EpisodeRecord]:
    """Plays whole songs, one episode each from chunk 0, through one MixingEnv.

    Args:
        policy: A :class:`~mixing_env.episodes.Policy` (a baseline or a :class:`ModulePolicy`).
        env_config: EnvConfig dict (dataset, features, reward settings).
        names: Songs to play; None: every song of the source.
        songs: In-memory Song objects to play instead of the config's dataset.
        source: A :class:`SongSource` to share between calls (its songs stay loaded).
    """
    cfg = {**env_config, "episode_chunks": None}
    if source is None:
        source = SongSource(cfg, songs=songs)
    env = MixingEnv({**cfg, "songs": None}, source=source)
    records = [run_episode(env, policy, song=name, start=0, seed=0)
               for name in (source.names if names is None else names)]
    env.close()
    return records


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


def evaluate_policy(policy: Policy, *, env_config: dict, songs: list[str] | None = None,
                    records: list | None = None) -> dict[str, float]:
    """Mean MFCC distance and mean reward of ``policy`` over the songs (the training metric)."""
    recs = play_songs(policy, env_config, names=songs)
    if records is not None:
        records.extend(recs)
    return {"mfcc_distance": float(np.mean([r.mfcc_distance.mean() for r in recs])),
            "reward": float(np.mean([r.reward.mean() for r in recs]))}


class HeldOutScore:
    """How a module does on held-out songs while it trains: its gap closed and distances.

    The baselines (equal gains, the oracle) are played once; every call plays the module
    deterministically (:class:`ModulePolicy`) on the same songs. RLlib's callbacks and the
    in-process behaviour cloning both score with it.

    Args:
        env_config: The held-out songs and the observation settings.
    """

    def __init__(self, env_config: dict):
        self.env_config = dict(env_config)
        self._baselines: dict[str, float] | None = None

    def __call__(self, module: Any) -> dict[str, float]:
        """The module's scores (it is put in eval mode by the caller).

        Returns:
            ``eval_mfcc_distance``, ``eval_reward``, ``eval_d_equal``, ``eval_d_oracle`` and
            ``gap_closed``.
        """
        from mixing_env.metrics import gap_closed

        if self._baselines is None:
            self._baselines = {
                name: evaluate_policy(make_baseline(name), env_config=self.env_config)[
                    "mfcc_distance"] for name in ("equal", "oracle")}
        agent = evaluate_policy(ModulePolicy(module), env_config=self.env_config)
        return {"eval_mfcc_distance": agent["mfcc_distance"], "eval_reward": agent["reward"],
                "eval_d_equal": self._baselines["equal"],
                "eval_d_oracle": self._baselines["oracle"],
                "gap_closed": gap_closed(d_agent=agent["mfcc_distance"],
                                         d_equal=self._baselines["equal"],
                                         d_oracle=self._baselines["oracle"])}


def _policy_for(spec: str, dataset_dir: str | None) -> tuple[Any, dict | None]:
    if is_baseline(spec):
        return make_baseline(spec, dataset_dir=dataset_dir), None
    if spec != PRETRAINED and not Path(spec).exists():  # the shipped agent is found later
        raise ConfigError(f"policy {spec!r} is neither a baseline (see mixing_env.baselines."
                          f"BASELINES) nor an existing checkpoint path")
    module, meta = load_policy(spec)
    return ModulePolicy(module, name=Path(meta["checkpoint"]).name), meta


def evaluate(policies: list[str], *, env_config: dict | None = None, out_dir: str | Path,
             plots: bool = True, progress: bool = True) -> list[dict]:
    """Evaluates each policy (checkpoint path or baseline spec) on every song of a dataset.

    Args:
        policies: Checkpoint paths and/or baseline specs (``equal``, ``instrument_balance=
            table.json``, ...; see :data:`mixing_env.baselines.BASELINES`).
        env_config: The dataset and env settings (``dataset_dir`` or ``synthetic``, ...). For a
            checkpoint, the env settings it was trained with come first and these override.
        out_dir: Where ``evaluation.json``, ``evaluation.csv`` and ``plots/`` go.
        plots: Write PNG plots.
        progress: Show a progress bar.

    Returns:
        The table rows: one per (policy, song) and one ``song="MEAN"`` row per policy, each with
        :data:`GAP_COLUMNS` (see the module docstring).
    """
    from tqdm import tqdm

    env_config = dict(env_config or {})
    out_dir = Path(out_dir)
    check_output_folder(out_dir, what="--out folder")  # made only when there is a table
    dataset = env_config.get("dataset_dir")
    loaded = [(spec, *_policy_for(spec, dataset)) for spec in policies]
    rows: list[dict] = []
    by_policy: dict[str, list[EpisodeRecord]] = {}
    sources: dict[str, SongSource] = {}
    # Baselines play the same songs as the (first) checkpoint unless a dataset is given.
    base = next((m["experiment"]["env"] for _, _, m in loaded if m), {})
    for spec, policy, meta in loaded:
        cfg = over_songs(meta["experiment"]["env"] if meta else base, env_config)
        source = _shared_source(sources, cfg)
        _check_layout(source, meta)  # before anything plays
        label = policy.name if meta is None else spec
        recs: list[EpisodeRecord] = []
        for name in tqdm(source.names, desc=f"evaluate {Path(label).name}",
                         disable=not progress):
            rec = play_songs(policy, cfg, names=[name], source=source)[0]
            if _silent_reference(rec.song):
                continue
            recs.append(rec)
            rows.append({"policy": label, "song": name, **score_episode(rec)})
        by_policy[label] = recs
        rows.append(_mean_row(label, [r for r in rows if r["policy"] == label]))
    _add_gap_closed(rows, _references(rows, sources, base, env_config))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(rows, out_dir)
    if plots:
        from rl_models.app.plots import plot_evaluation

        plot_evaluation(by_policy, out_dir / "plots")
    return rows


def _shared_source(sources: dict[str, SongSource], cfg: dict) -> SongSource:
    """One song source per song set, so policies on the same songs share loaded songs."""
    keys = ("dataset_dir", "synthetic", "songs")
    key = json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True, default=str)
    if key not in sources:
        sources[key] = SongSource({k: cfg[k] for k in keys if cfg.get(k) is not None})
    return sources[key]


def _mean_row(label: str, rows: list[dict]) -> dict:
    mean = {c: float(np.nanmean([r[c] for r in rows]))
            if any(not math.isnan(r[c]) for r in rows) else math.nan for c in METRIC_COLUMNS}
    return {"policy": label, "song": "MEAN", **mean}


def _references(rows: list[dict], sources: dict[str, SongSource], base: dict,
                env_config: dict) -> dict[str, dict[str, float]]:
    """MFCC distance per song (and ``MEAN``) of equal gains and the oracle.

    Taken from their rows when they are rows; else played here on the evaluated songs
    (the first song set), so every table can show ``gap_closed``.
    """
    refs: dict[str, dict[str, float]] = {}
    for name in ("equal", "oracle"):
        mine = {r["song"]: r["mfcc_distance"] for r in rows if r["policy"] == name}
        if not mine and sources:
            cfg = over_songs(base, env_config)
            source = next(iter(sources.values()))
            recs = play_songs(make_baseline(name), cfg, source=source)
            scored = {r["song"] for r in rows}  # silent references stay left out
            mine = {r.song.name: float(r.mfcc_distance.mean()) for r in recs
                    if r.song.name in scored}
            mine["MEAN"] = float(np.mean(list(mine.values())))
        refs[name] = mine
    return refs


def _check_layout(source: SongSource, meta: dict | None) -> None:
    slots = list(source.layout.slot_names)
    if meta and slots != list(meta["slot_names"]):
        raise CheckpointError(
            f"checkpoint {meta['checkpoint']} was trained on slots {meta['slot_names']}, "
            f"but song {source.names[0]!r} has slots {slots}"
        )


def _silent_reference(song: Any) -> bool:
    """True (with a warning) when the song's reference is silent: every mix would score perfect."""
    import warnings

    from mixing_env.data.prepare import SILENCE_PEAK

    if float(np.max(np.abs(song.reference))) > SILENCE_PEAK:
        return False
    warnings.warn(f"song {song.name!r}: its reference mix is silent; left out of the scores",
                  stacklevel=3)
    return True


def _add_gap_closed(rows: list[dict], refs: dict[str, dict[str, float]]) -> None:
    """Adds :data:`GAP_COLUMNS` to every row whose song the references cover."""
    from mixing_env.metrics import gap_closed

    balance = {r["song"]: r["mfcc_distance"] for r in rows if r["policy"] == _BALANCE}
    for r in rows:
        song = r["song"]
        if song in refs["equal"] and song in refs["oracle"]:
            r["gap_closed"] = gap_closed(d_agent=r["mfcc_distance"],
                                         d_equal=refs["equal"][song],
                                         d_oracle=refs["oracle"][song])
        if song in balance and song in refs["oracle"]:
            r["balance_gap_closed"] = gap_closed(d_agent=r["mfcc_distance"],
                                                 d_equal=balance[song],
                                                 d_oracle=refs["oracle"][song])


def _columns(rows: list[dict]) -> list[str]:
    return ["policy", "song", *METRIC_COLUMNS,
            *(c for c in GAP_COLUMNS if c == "gap_closed" or any(c in r for r in rows))]


def write_table(rows: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``evaluation.json`` and ``evaluation.csv`` (NaN as empty CSV cells / JSON null)."""
    out_dir = Path(out_dir)
    columns = _columns(rows)
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
    columns = [c for c in _columns(rows) if c not in GAP_COLUMNS or any(c in r for r in rows)]
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
