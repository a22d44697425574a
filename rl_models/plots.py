"""PNG plots of gain automation and MFCC distance (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_automation", "plot_evaluation"]


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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


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
        fig.tight_layout()
        path = out_dir / f"{song_name}__mfcc_distance.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
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
