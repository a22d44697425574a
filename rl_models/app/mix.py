"""Mix a new multitrack folder with a trained checkpoint: WAV, gain automation (CSV/JSON), PNG.

How the agent is driven: the song's stems are loaded at the env's sample rate, put in the
checkpoint's slot layout (``mixing_env.data.slots.place_stems``: a stem whose instrument's
slots are full goes to its section's Extra, with a warning), and played through a
:class:`MixingEnv` built on that one in-memory song, so the observations come from exactly the
code the agent was trained with. The env needs a reference for its reward; here the reference
is a placeholder (the plain sum of the stems) and the rewards are ignored: the agent's
observations (its stems and its own mix's MFCC) do not depend on the reference.

How the WAV is made: every stem is read again at its source sample rate and channel count,
multiplied sample by sample by its gain of the chunk the sample falls in (chunk ``t`` covers
``[t * chunk_size, (t + 1) * chunk_size) / env_rate`` seconds), and the stems are summed. The
gains are on the simplex, which sets only the balance, so the sum is then scaled by one overall
make-up gain: to ``target_lufs`` integrated loudness (pyloudnorm), lowered if needed so the peak
stays at or below ``peak_dbfs``. The make-up gain is written to the JSON, so
``wav == makeup_gain * sum_i gain_i(t) * stem_i``, with the loudness the WAV really has
(``loudness_lufs``); a target the peak limit keeps out of reach is reported in a warning.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np

from mixing_env.errors import ConfigError, DatasetError
from mixing_env.paths import check_output_folder

__all__ = ["MixResult", "check_mix_options", "find_stems", "mix_song", "render_at_source_rate",
           "makeup_gain"]

_AUDIO = (".wav", ".flac", ".aif", ".aiff")
LEVEL_RANGE_DB = (-70.0, 0.0)
"""Accepted ``target_lufs`` and ``peak_dbfs``: quieter is near-silence, louder clips."""
_MISSED_BY_LU = 0.1  # a reached loudness further below the target than this is reported


class MixResult(dict):
    """Paths and numbers of one mix: ``wav``, ``csv``, ``json``, ``png``, ``makeup_gain``..."""


def find_stems(folder: str | Path, *, mix_pattern: str = "*Mix*") -> tuple[str, list[Path]]:
    """The song name and stem files of a multitrack folder in any supported layout.

    A mix file is optional: when the layout reader finds a song, its stems are used; a folder
    of stems with no mix (Cambridge-MT flat or ``<Song>_Full/``, MUSDB stems without
    ``mixture.wav``) takes every audio file that does not match ``mix_pattern``.

    Raises:
        DatasetError: The folder is missing or holds no audio.
    """
    import fnmatch

    from mixing_env.data.layouts import scan_songs

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"multitrack folder not found: {folder}")
    songs, _ = scan_songs(folder, mix_pattern=mix_pattern)
    if len(songs) == 1:
        return songs[0].name, [s.path for s in songs[0].stems]
    if len(songs) > 1:
        raise DatasetError(f"{folder} holds {len(songs)} songs ({[s.name for s in songs]}); "
                           f"mix expects one song folder")
    full = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower().endswith("_full"))
    search = full or [folder]
    files = sorted(p for d in search for p in d.iterdir()
                   if p.suffix.lower() in _AUDIO
                   and not fnmatch.fnmatch(p.name.lower(), mix_pattern.lower())
                   and p.stem.lower() != "mixture")
    if not files:
        raise DatasetError(f"no stems found in {folder}: expected audio files "
                           f"({', '.join(_AUDIO)}) in the folder or in <Song>_Full/")
    return folder.name, files


def check_mix_options(*, out_dir: str | Path, target_lufs: float | None,
                      peak_dbfs: float) -> None:
    """Refuses levels outside :data:`LEVEL_RANGE_DB` and an ``out_dir`` that cannot be a folder.

    Called before the checkpoint is loaded, so a mistake costs no mixing time.

    Raises:
        ConfigError: A level is NaN, infinite or out of range, or ``out_dir`` (or a folder
            above it) is a file.
    """
    lo, hi = LEVEL_RANGE_DB
    for option, value in (("--target-lufs", target_lufs), ("--peak-dbfs", peak_dbfs)):
        if value is not None and not lo <= value <= hi:  # False for NaN too
            raise ConfigError(f"{option} must be a number from {lo:g} to {hi:g}, got {value}")
    check_output_folder(out_dir, what="--out folder")


def makeup_gain(mix: np.ndarray, *, sample_rate: int, target_lufs: float | None = -14.0,
                peak_dbfs: float = -1.0) -> float:
    """One overall gain: to ``target_lufs`` (None: peak only), capped so the peak <= ``peak_dbfs``.

    Args:
        mix: The simplex mix [shape=(channels, n)].
        sample_rate: Its sample rate in Hz.
        target_lufs: Integrated loudness to reach; None normalizes the peak only.
        peak_dbfs: Largest allowed sample peak in dBFS.
    """
    from mixing_env.metrics import integrated_loudness

    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak == 0.0:
        return 1.0
    peak_cap = 10.0 ** (peak_dbfs / 20.0) / peak
    if target_lufs is None:
        return peak_cap
    loudness = integrated_loudness(mix.mean(axis=0), sample_rate=sample_rate)
    if not np.isfinite(loudness):
        return peak_cap
    return float(min(10.0 ** ((target_lufs - loudness) / 20.0), peak_cap))


def render_at_source_rate(stems: list[np.ndarray], gains: np.ndarray, *, source_rate: int,
                          env_rate: int, chunk_size: int) -> np.ndarray:
    """``sum_i g_i(t) * stem_i`` at the source rate, gains held over each chunk's time span.

    Args:
        stems: Each stem at ``source_rate`` [shape=(channels_i, n_i)].
        gains: Per-chunk gains, one row per stem [shape=(len(stems), T)].
        source_rate: Sample rate of ``stems`` in Hz.
        env_rate: Sample rate the chunks were cut at, Hz.
        chunk_size: Samples per chunk at ``env_rate``.

    Returns:
        float64 [shape=(max channels, max n)]; mono stems go to every channel.
    """
    channels = max(s.shape[0] for s in stems)
    n = max(s.shape[1] for s in stems)
    t_of_sample = np.minimum(
        (np.arange(n) * env_rate / source_rate // chunk_size).astype(int), gains.shape[1] - 1
    )
    out = np.zeros((channels, n))
    for stem, g in zip(stems, gains, strict=True):
        out[:, : stem.shape[1]] += stem.astype(np.float64) * g[t_of_sample[: stem.shape[1]]]
    return out


def mix_song(checkpoint: str | Path, folder: str | Path, *, out_dir: str | Path,
             target_lufs: float | None = -14.0, peak_dbfs: float = -1.0,
             mix_pattern: str = "*Mix*", taxonomy: str | Path | None = None,
             progress: bool = True) -> MixResult:
    """Mixes one multitrack folder with a checkpoint.

    Args:
        checkpoint: A checkpoint, trial or experiment folder (see
            ``rl_models.checkpoints.find_checkpoint``), or a
            baseline spec (``loudness``, ``instrument_balance=table.json``), which mixes the
            stems in their own taxonomy slots.
        folder: The song's folder (any supported layout; a mix file is optional and unused).
        out_dir: Where ``<song>_mix.wav``, ``<song>_automation.{csv,json,png}`` go.
        target_lufs: Loudness of the output; None: peak normalization only.
        peak_dbfs: Largest sample peak of the output.
        mix_pattern: Glob that names a mix file (excluded from the stems).
        taxonomy: A taxonomy YAML overriding the default name rules.
        progress: Show a progress bar.

    Returns:
        A :class:`MixResult` with the written paths, the make-up gain and the slot of each stem.

    Raises:
        DatasetError: No stems, or none of them fits the checkpoint's slots.
        CheckpointError: The checkpoint cannot be loaded.
        ConfigError: A level is out of range, or ``out_dir`` is a file (checked first).
    """
    from tqdm import tqdm

    from mixing_env.baselines import is_baseline, make_baseline
    from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
    from mixing_env.data.audio_io import read_audio, write_audio
    from mixing_env.data.slots import build_song, default_layout, place_stems
    from mixing_env.data.taxonomy import Taxonomy
    from rl_models.app.evaluate import play_songs
    from rl_models.app.module_policy import ModulePolicy
    from rl_models.app.plots import plot_automation
    from rl_models.checkpoints import load_policy

    check_mix_options(out_dir=out_dir, target_lufs=target_lufs, peak_dbfs=peak_dbfs)
    if is_baseline(str(checkpoint)):  # a baseline plays in the fixed layout's slots
        policy = make_baseline(str(checkpoint))
        meta = {"checkpoint": str(checkpoint), "experiment": {"env": {}},
                "slot_names": default_layout(), "sample_rate": SAMPLE_RATE,
                "chunk_size": CHUNK_SIZE}
    else:
        module, meta = load_policy(checkpoint)
        policy = ModulePolicy(module)
    slot_names: list[str] = list(meta["slot_names"])
    env_rate, chunk = int(meta["sample_rate"]), int(meta["chunk_size"])
    name, files = find_stems(folder, mix_pattern=mix_pattern)
    placement = place_stems([p.stem for p in files], slot_names, Taxonomy.load(taxonomy),
                            labels=[str(p) for p in files])
    for note in placement.notes:  # Extra slots and stems with no slot are never silent
        warnings.warn(note, stacklevel=2)
    placed = [(files[i], placement.slots[i]) for i, _ in placement.placed]
    unplaced = [str(files[i]) for i in placement.left_out]
    if not placed:
        raise DatasetError(f"none of the stems in {folder} fits the checkpoint's slots "
                           f"{slot_names}")

    bar = tqdm(total=2 * len(placed), desc=f"mix {name}", disable=not progress)  # + chunks
    env_stems = {}
    for i, _ in placement.placed:
        env_stems[i] = read_audio(files[i], sample_rate=env_rate, mono=True)[0]
        bar.update()
    song = build_song(name, placement, [env_stems.get(i, np.zeros(0, np.float32))
                                        for i in range(len(files))],
                      layout=slot_names, sample_rate=env_rate, chunk_size=chunk,
                      stem_files=[str(p) for p in files])
    rows = [row for _, row in placement.placed]
    env_config = {k: v for k, v in meta["experiment"]["env"].items()
                  if k not in ("dataset_dir", "songs", "synthetic")}
    bar.total += song.stems.shape[1]
    record = play_songs(_Ticking(policy, bar), env_config, songs=[song])[0]
    gains = record.gains[rows]  # (n placed, T)

    source = []
    for path, _ in placed:
        source.append((read_audio(path, sample_rate=None, mono=False), path))
        bar.update()
    bar.close()
    from mixing_env.data.audio_io import audio_info

    source_rate = int(audio_info(placed[0][0]).sample_rate)
    source_stems = [y if audio_info(p).sample_rate == source_rate
                    else read_audio(p, sample_rate=source_rate, mono=False) for y, p in source]
    raw = render_at_source_rate(source_stems, gains, source_rate=source_rate,
                                env_rate=env_rate, chunk_size=chunk)
    gain = makeup_gain(raw, sample_rate=source_rate, target_lufs=target_lufs,
                       peak_dbfs=peak_dbfs)
    reached = _reached_loudness(raw * gain, sample_rate=source_rate, target_lufs=target_lufs,
                                peak_dbfs=peak_dbfs)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wav = write_audio(out_dir / f"{name}_mix.wav", (raw * gain).astype(np.float32),
                      sample_rate=source_rate, subtype="FLOAT")
    times = np.arange(gains.shape[1]) * chunk / env_rate
    tracks = [p.stem for p, _ in placed]
    csv_path = out_dir / f"{name}_automation.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time_s", "track", "slot", "gain", "gain_db"])
        for t, time_s in enumerate(times):
            for i, (track, (_, slot)) in enumerate(zip(tracks, placed, strict=True)):
                g = float(gains[i, t])
                writer.writerow([f"{time_s:.6f}", track, slot, f"{g:.8f}", f"{_db(g):.4f}"])
    json_path = out_dir / f"{name}_automation.json"
    json_path.write_text(json.dumps({
        "song": name,
        "checkpoint": meta["checkpoint"],
        "source_sample_rate": source_rate,
        "env_sample_rate": env_rate,
        "chunk_size": chunk,
        "chunk_seconds": chunk / env_rate,
        "makeup_gain": gain,
        "makeup_gain_db": _db(gain),
        "target_lufs": target_lufs,
        "loudness_lufs": reached if np.isfinite(reached) else None,
        "peak_dbfs": peak_dbfs,
        "time_s": times.tolist(),
        "tracks": [{"track": track, "file": str(p), "slot": slot,
                    "gain": gains[i].tolist(), "gain_db": [_db(g) for g in gains[i]]}
                   for i, (track, (p, slot)) in enumerate(zip(tracks, placed, strict=True))],
        "unplaced_stems": unplaced,
    }, indent=1, allow_nan=False))
    png = plot_automation(out_dir / f"{name}_automation.png", times_s=times, gains=gains,
                          names=tracks, title=f"{name}: gain automation")
    return MixResult(wav=wav, csv=csv_path, json=json_path, png=png, makeup_gain=gain,
                     loudness_lufs=reached, slots={str(p): s for p, s in placed}, unplaced=unplaced)


class _Ticking:
    """A policy that moves a progress bar one step per chunk it plays."""

    def __init__(self, policy, bar):
        self.policy, self.bar = policy, bar
        self.name = policy.name

    def reset(self, song, start: int) -> None:
        self.policy.reset(song, start)

    def act(self, obs: dict) -> np.ndarray:
        self.bar.update()
        return self.policy.act(obs)


def _reached_loudness(wav: np.ndarray, *, sample_rate: int, target_lufs: float | None,
                      peak_dbfs: float) -> float:
    """The WAV's integrated loudness; warns when it falls short of ``target_lufs``."""
    from mixing_env.metrics import integrated_loudness

    reached = integrated_loudness(wav.mean(axis=0), sample_rate=sample_rate)
    if target_lufs is not None and not reached >= target_lufs - _MISSED_BY_LU:
        why = (f"the peak limit {peak_dbfs:g} dBFS holds it at {reached:.1f} LUFS"
               if np.isfinite(reached) else "the stems are silent")
        warnings.warn(f"loudness target {target_lufs:g} LUFS not reached: {why}", stacklevel=3)
    return reached


def _db(g: float) -> float:
    return float(20.0 * np.log10(max(g, 1e-10)))
