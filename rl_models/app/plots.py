"""PNG plots: gain automation, MFCC distance, learning curves (matplotlib, Agg: no display)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "evaluation_points",
    "plot_automation",
    "plot_evaluation",
    "plot_learning_curves",
    "plot_training_curve",
    "read_learning_curve",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_automation(
    path: str | Path,
    *,
    times_s: np.ndarray,
    gains: np.ndarray,
    names: list[str],
    compare: np.ndarray | None = None,
    compare_label: str = "truth",
    title: str = "",
) -> Path:
    """One panel per track: its gain over time, optionally against another automation.

    Args:
        path: PNG to write.
        times_s: Start time of each chunk in seconds [shape=(T,)].
        gains: Gains per track [shape=(C, T)].
        names: Track names [len C].
        compare: Automation to draw dashed beside it (truth or oracle) [shape=(C, T)].
        compare_label: Legend label of ``compare``.
        title: Figure title.

    Returns:
        The written path.
    """
    plt = _pyplot()
    n = max(len(names), 1)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.4 * n + 0.8), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.step(times_s, gains[i], where="post", label="policy", lw=1.2)
        if compare is not None:
            ax.step(times_s, compare[i], where="post", ls="--", lw=1.0, label=compare_label)
        ax.set_ylabel(names[i], rotation=0, ha="right", fontsize=8)
        ax.set_ylim(0, max(1e-3, float(np.max(gains[i])),
                           float(np.max(compare[i])) if compare is not None else 0) * 1.1)
    axes[0, 0].legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title or "gain automation")
    return _save(fig, path)


def plot_evaluation(records: dict[str, list[Any]], out_dir: str | Path) -> list[Path]:
    """Per song: each policy's gains against the truth (or the oracle), and MFCC distance over time.

    Args:
        records: Policy label -> its :class:`mixing_env.episodes.EpisodeRecord` per song.
        out_dir: Folder for the PNGs.

    Returns:
        The written paths.
    """
    from mixing_env.reward import to_simplex

    out_dir = Path(out_dir)
    written = []
    oracle = {r.song.name: r for r in records.get("oracle", [])}
    songs: dict[str, dict[str, Any]] = {}
    for label, recs in records.items():
        for rec in recs:
            songs.setdefault(rec.song.name, {})[label] = rec
    for song_name, by_label in songs.items():
        for label, rec in by_label.items():
            song = rec.song
            real = np.flatnonzero(np.asarray(song.track_mask) > 0)
            n = rec.gains.shape[1]
            times = np.arange(n) * song.chunk_size / song.sample_rate
            if song.true_gains is not None:
                compare = to_simplex(np.asarray(song.true_gains)[:, :n], song.track_mask, axis=0)
                compare_label = "truth"
            elif song_name in oracle and label != "oracle":
                compare, compare_label = oracle[song_name].gains, "oracle"
            else:
                compare, compare_label = None, ""
            safe = _short_label(label).replace(" ", "_")
            written.append(plot_automation(
                out_dir / f"{song_name}__{safe}__gains.png",
                times_s=times,
                gains=rec.gains[real],
                names=[song.slot_names[i] for i in real],
                compare=None if compare is None else compare[real],
                compare_label=compare_label,
                title=f"{song_name}: {safe}",
            ))
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(9, 3))
        for label, rec in by_label.items():
            t = np.arange(len(rec.mfcc_distance)) * rec.song.chunk_size / rec.song.sample_rate
            ax.plot(t, rec.mfcc_distance, lw=1.0, label=_short_label(label))
        ax.set_xlabel("time (s)")
        ax.set_ylabel("MFCC distance")
        ax.set_title(f"{song_name}: MFCC distance to the reference per chunk")
        ax.legend(fontsize=7)
        written.append(_save(fig, out_dir / f"{song_name}__mfcc_distance.png"))
    return written


def _short_label(label: str) -> str:
    """A policy's name for files and legends: a baseline's name, or ``<trial>_<checkpoint>``.

    Checkpoints of different trials share names (``checkpoint_000000``), so the trial folder
    stays in the label.
    """
    path = Path(str(label))
    if path.name.startswith("checkpoint_") and path.parent.name:
        return f"{path.parent.name}_{path.name}"
    return path.name


def read_learning_curve(result_json: str | Path) -> list[dict]:
    """Per iteration of a Tune trial's ``result.json``: time, env steps, return, loss, gap.

    Returns:
        Rows with ``iteration``, ``time_s``, ``env_steps``, ``return_mean``, ``policy_loss``
        and ``gap_closed`` (None where the result lacks it).
    """
    rows = []
    path = Path(result_json)
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        runners = r.get("env_runners", {}) or {}
        rows.append({
            "iteration": r.get("training_iteration"),
            "time_s": r.get("time_total_s"),
            "env_steps": runners.get("num_env_steps_sampled_lifetime"),
            "return_mean": runners.get("episode_return_mean"),
            "policy_loss": (r.get("learners", {}) or {}).get("default_policy", {}
                                                             ).get("policy_loss"),
            "gap_closed": (r.get("deepmixing", {}) or {}).get("gap_closed"),
        })
    return rows


def evaluation_points(rows: list[dict]) -> list[tuple[float, float]]:
    """``(time_s, gap_closed)`` once per held-out evaluation of :func:`read_learning_curve` rows.

    RLlib carries the last evaluation into every later iteration's result until the next one:
    a point is kept where a value first appears.
    """
    points, last = [], None
    for r in rows:
        value = r.get("gap_closed")
        if _finite(value) and r.get("time_s") is not None and value != last:
            points.append((r["time_s"], value))
        last = value
    return points


def _finite(v: Any) -> bool:
    return v is not None and np.isfinite(v)


def plot_training_curve(result_json: str | Path, path: str | Path) -> Path:
    """One trial's learning curve: mean episode return, and held-out ``gap_closed``.

    Args:
        result_json: The trial's ``result.json`` (one JSON result per line).
        path: PNG to write.

    Returns:
        The written path.
    """
    rows = read_learning_curve(result_json)
    plt = _pyplot()
    fig, (ax_ret, ax_gap) = plt.subplots(1, 2, figsize=(10, 3.5))
    pts = [(r["iteration"], r["return_mean"]) for r in rows if _finite(r["return_mean"])]
    if pts:
        ax_ret.plot(*zip(*pts, strict=True), marker=".")
    ax_ret.set(xlabel="iteration", ylabel="mean episode return", title="training songs")
    gaps = [(r["iteration"], r["gap_closed"]) for r in rows if _finite(r["gap_closed"])]
    if gaps:
        ax_gap.plot(*zip(*gaps, strict=True), marker="o")
    ax_gap.set(xlabel="iteration", ylabel="gap closed", title="held-out songs")
    for ax in (ax_ret, ax_gap):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_learning_curves(curves: dict[str, list[dict]], out: str | Path, *,
                         labels: dict[str, str] | None = None,
                         loss_curves: tuple[str, ...] = (),
                         references: dict[str, float] | None = None) -> Path:
    """Several agents' curves: held-out gap closed, training return, supervised loss.

    Args:
        curves: Agent name -> rows of :func:`read_learning_curve` (or the same keys).
        out: PNG to write.
        labels: Agent name -> legend label.
        loss_curves: Agents drawn as loss per iteration (behaviour cloning), not as returns.
        references: Held-out gap closed of baselines drawn as horizontal lines (e.g.
            ``instrument_balance``, ``bound``).

    Returns:
        The written path.
    """
    labels = labels or {}
    plt = _pyplot()
    fig, (ax_gap, ax_rl, ax_bc) = plt.subplots(1, 3, figsize=(16, 4))
    for name, rows in curves.items():
        label = labels.get(name, name)
        gap = evaluation_points(rows)
        if gap:
            ax_gap.plot(*zip(*sorted(set(gap)), strict=True), marker=".", label=label)
        if name in loss_curves:
            pts = [(r["iteration"], r["policy_loss"]) for r in rows
                   if r.get("policy_loss") is not None]
            if pts:
                ax_bc.plot(*zip(*pts, strict=True), label=label)
            continue
        # NaN where no episode ended in the iteration (whole songs end every few iterations)
        pts = [(r["time_s"], r["return_mean"]) for r in rows
               if _finite(r.get("return_mean")) and r.get("time_s") is not None]
        if pts:
            ax_rl.plot(*zip(*pts, strict=True), label=label)
    for k, (name, value) in enumerate((references or {}).items()):
        ax_gap.axhline(value, color="0.4", linestyle=("--", ":", "-.")[k % 3], label=name)
    ax_gap.set(xlabel="training time (s, 2 CPU cores)", ylabel="gap closed (held-out songs)",
               title="Held-out score while training")
    ax_rl.set(xlabel="wall time (s, 2 CPU cores)", ylabel="mean episode return",
              title="RL agents on training songs")
    ax_bc.set(xlabel="update", ylabel="BC loss", title="Behaviour cloning")
    for ax in (ax_gap, ax_rl, ax_bc):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, out, dpi=110)


def _save(fig: Any, path: str | Path, *, dpi: int = 90) -> Path:
    """Lay out, write (making the folder) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path
