"""Mix a new multitrack folder with a trained checkpoint: a stereo WAV, automation, a project.

What comes out, in ``out_dir``:

- ``<song>_mix.wav``: stereo (float32, the stems' sample rate), mono stems placed by the
  panning convention (:mod:`rl_models.app.mixdown.panning`) and stereo stems keeping their
  image, brought to ``target_lufs`` (BS.1770) under a true-peak ceiling by a make-up gain
  and a look-ahead true-peak limiter (:mod:`rl_models.app.mixdown.master`).
- ``<song>_automation.csv`` / ``.json``: each stem's gain at the points where it moves
  (enough to redraw the curve within 0.1 dB; every chunk with ``full_automation``), its
  pan, and in the JSON the loudness, true peak, make-up gain and what the limiter did.
- ``<song>_automation.png``: the curves.
- ``<song>.rpp``: a REAPER project with one track per stem, its pan and its gain envelope
  (:mod:`rl_models.app.mixdown.reaper`).

How the agent is driven (:mod:`rl_models.app.mixdown.agent`): the stems are put in the
checkpoint's slot layout (``mixing_env.data.slots.place_stems``), read at the env's rate a
window at a time, and shown to the agent exactly as the env shows a song in training
(:mod:`rl_models.app.mixdown.observation`; whole-song parts of the observation come from a
first pass over the song); its recurrent state runs on from window to window. The gain of a
chunk runs linearly to the next chunk's (:mod:`rl_models.app.mixdown.render`). Memory holds a
window of audio, not the song: only the gains (8 bytes per stem and chunk) grow with it.

A baseline (``loudness``, ``instrument_balance=table.json``, ...) instead of a checkpoint
reads whole stems, as baselines do, and is not streamed.

Nothing is written half: every file is written under a temporary name in ``out_dir`` and
renamed when all are done; on an error they are removed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import tempfile
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mixing_env.errors import ConfigError, DatasetError, DeepMixingError
from mixing_env.paths import check_output_folder

__all__ = ["LEVEL_RANGE_DB", "MixResult", "check_mix_options", "find_stems", "mix_song"]

_AUDIO = (".wav", ".flac", ".aif", ".aiff")
LEVEL_RANGE_DB = (-70.0, 0.0)
"""Accepted ``target_lufs`` and ``true_peak``: quieter is near-silence, louder clips."""
WINDOW_CHUNKS = 128
"""Chunks each pass over the env-rate stems reads at a time (1.5 s at 44.1 kHz)."""
_PLOT_POINTS = 4000  # points per curve in the PNG (more than its pixels)


class MixResult(dict):
    """Paths and numbers of one mix.

    Keys: ``wav``, ``csv``, ``json``, ``png``, ``rpp``, ``makeup_gain``, ``loudness_lufs``,
    ``true_peak_dbtp``, ``limiter``, ``slots``, ``unplaced``.
    """


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
                      true_peak: float) -> None:
    """Refuses levels outside :data:`LEVEL_RANGE_DB` and an ``out_dir`` that cannot be a folder.

    Called before the checkpoint is loaded, so a mistake costs no mixing time.

    Raises:
        ConfigError: A level is NaN, infinite or out of range, or ``out_dir`` (or a folder
            above it) is a file.
    """
    lo, hi = LEVEL_RANGE_DB
    for option, value in (("--target-lufs", target_lufs), ("--true-peak", true_peak)):
        if value is not None and not lo <= value <= hi:  # False for NaN too
            raise ConfigError(f"{option} must be a number from {lo:g} to {hi:g}, got {value}")
    check_output_folder(out_dir, what="--out folder")


def mix_song(checkpoint: str | Path, folder: str | Path, *, out_dir: str | Path,
             target_lufs: float | None = -14.0, true_peak: float = -1.0, mono: bool = False,
             full_automation: bool = False, mix_pattern: str = "*Mix*",
             taxonomy: str | Path | None = None, progress: bool = True) -> MixResult:
    """Mixes one multitrack folder with a checkpoint.

    Args:
        checkpoint: A checkpoint, trial or experiment folder (see
            ``rl_models.checkpoints.find_checkpoint``), ``pretrained``, or a baseline spec
            (``loudness``, ``instrument_balance=table.json``), which mixes the stems in their
            own taxonomy slots.
        folder: The song's folder (any supported layout; a mix file is optional and unused).
        out_dir: Where the outputs go (see the module docstring).
        target_lufs: Integrated loudness of the WAV; None: the true peak is brought to
            ``true_peak`` by the make-up gain alone, without the limiter.
        true_peak: Largest true peak of the WAV, dBTP.
        mono: Today's placement: no panning, mono stems in every channel (a mono WAV when
            every stem is mono).
        full_automation: Write every chunk's gain, not only the points where it moves.
        mix_pattern: Glob that names a mix file (excluded from the stems).
        taxonomy: A taxonomy YAML overriding the default name rules.
        progress: Show progress bars.

    Returns:
        A :class:`MixResult`.

    Raises:
        DatasetError: No stems, or none of them fits the checkpoint's slots.
        AudioFileError: A stem is unreadable, truncated, holds NaN, or has more than two
            channels (named; checked before any mixing).
        CheckpointError: The checkpoint cannot be loaded.
        ConfigError: A level is out of range, or ``out_dir`` is a file (checked first).
    """
    from mixing_env.data.slots import place_stems
    from mixing_env.data.taxonomy import Taxonomy
    from rl_models.app.mixdown.stems import check_stems

    check_mix_options(out_dir=out_dir, target_lufs=target_lufs, true_peak=true_peak)
    player, meta = _load_player(checkpoint)
    slot_names: list[str] = list(meta["slot_names"])
    env_rate, chunk = int(meta["sample_rate"]), int(meta["chunk_size"])
    name, files = find_stems(folder, mix_pattern=mix_pattern)
    placement = place_stems([p.stem for p in files], slot_names, Taxonomy.load(taxonomy),
                            labels=[str(p) for p in files])
    for note in placement.notes:  # Extra slots and stems with no slot are never silent
        warnings.warn(note, stacklevel=2)
    placed = [(files[i], placement.slots[i], row) for i, row in placement.placed]
    unplaced = [str(files[i]) for i in placement.left_out]
    if not placed:
        raise DatasetError(f"none of the stems in {folder} fits the checkpoint's slots "
                           f"{slot_names}")
    stems, source_rate = check_stems([p for p, _, _ in placed])
    song = _SongPlan(name=name, stems=stems, slots=[s for _, s, _ in placed],
                     rows=[r for _, _, r in placed], n_slots=len(slot_names), env_rate=env_rate,
                     chunk=chunk, source_rate=source_rate)
    with _StagedOutputs(out_dir) as staged, _one_thread():
        gains, sounding = player(song, meta, progress)
        for stem, plays in zip(stems, sounding, strict=True):
            if not plays:
                warnings.warn(f"stem {stem.path} is silent", stacklevel=2)
        return _write_outputs(song, gains, staged, meta=meta, target_lufs=target_lufs,
                              true_peak=true_peak, mono=mono, full_automation=full_automation,
                              unplaced=unplaced, progress=progress)


class _SongPlan:
    """One song's placed stems and the rates and sizes every pass shares."""

    def __init__(self, *, name, stems, slots, rows, n_slots, env_rate, chunk, source_rate):
        self.name, self.stems, self.slots, self.rows = name, stems, slots, rows
        self.n_slots, self.env_rate, self.chunk = n_slots, env_rate, chunk
        self.source_rate = source_rate
        self.n_chunks = math.ceil(max(s.frames_at(env_rate) for s in stems) / chunk)
        self.frames = max(s.frames_at(source_rate) for s in stems)


def _load_player(checkpoint):
    """``(play, meta)``: ``play(song, meta, progress) -> (gains (A, T), sounding (A,))``."""
    from mixing_env.baselines import is_baseline, make_baseline
    from mixing_env.constants import CHUNK_SIZE, SAMPLE_RATE
    from mixing_env.data.slots import default_layout

    if is_baseline(str(checkpoint)):  # a baseline plays in the fixed layout's slots
        policy = make_baseline(str(checkpoint))
        meta = {"checkpoint": str(checkpoint), "experiment": {"env": {}},
                "slot_names": default_layout(), "sample_rate": SAMPLE_RATE,
                "chunk_size": CHUNK_SIZE}
        return (lambda song, meta, progress: _baseline_gains(policy, song)), meta
    from rl_models.checkpoints import find_checkpoint, load_policy, read_metadata

    try:  # the layout now; the module (torch and RLlib to import) while the first pass runs
        folder = find_checkpoint(checkpoint).resolve()
        meta = {**read_metadata(folder), "checkpoint": str(folder)}
    except DeepMixingError:
        load_policy(checkpoint)  # raises the error, with its hints
        raise
    # load_policy(checkpoint), not (folder): on a damaged file it names the older checkpoints.
    return (lambda song, meta, progress: _agent_gains(lambda: load_policy(checkpoint)[0],
                                                      song, meta, progress)), meta


def _env_config(meta: dict):
    from mixing_env.envs.config import EnvConfig

    return EnvConfig.from_dict({k: v for k, v in meta["experiment"]["env"].items()
                                if k not in ("dataset_dir", "songs", "synthetic", "generated")})


def _agent_gains(load_module, song: _SongPlan, meta: dict, progress: bool):
    """The streaming agent pass, after the first pass when the observation needs one.

    ``load_module()`` builds the policy: it runs while the first pass reads the stems.
    """
    from tqdm import tqdm

    from mixing_env.envs.song_features import SongPrecompute
    from rl_models.app.mixdown.agent import FastModuleSteps, play_streaming
    from rl_models.app.mixdown.observation import StreamingObservation, WholeStemStatistics
    from rl_models.app.mixdown.stems import env_windows

    cfg = _env_config(meta)
    pre = SongPrecompute(cfg, n_slots=song.n_slots, chunk_size=song.chunk,
                         sample_rate=song.env_rate)
    a, t = len(song.stems), song.n_chunks

    def windows(stage: str):
        bar = tqdm(total=t, desc=f"{song.name}: {stage}", unit="chunk", disable=not progress)
        for window in env_windows(song.stems, sample_rate=song.env_rate, chunk_size=song.chunk,
                                  n_chunks=t, window_chunks=WINDOW_CHUNKS):
            yield window
            bar.update(window.shape[1])
        bar.close()

    whole = WholeStemStatistics(cfg, n_tracks=a, n_chunks=t, sample_rate=song.env_rate,
                                chunk_size=song.chunk, logmel=pre.logmel, rows=song.rows,
                                slots=song.slots, files=[str(s.path) for s in song.stems])
    needs_first_pass = (cfg.stem_level_features or cfg.stem_spectrum_features
                        or cfg.listening_features or cfg.stem_loudness_feature)
    stop = threading.Event()

    def first_pass() -> None:
        for window in windows("reading stems"):
            if stop.is_set():
                return
            whole.add(window)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mix-first-pass") as pool:
        reading = pool.submit(first_pass) if needs_first_pass else None
        try:
            module = load_module()  # imports torch and RLlib while the stems are read
        except BaseException:
            stop.set()
            raise
        if reading is not None:
            reading.result()
    observation = StreamingObservation(cfg, pre, whole if needs_first_pass else None,
                                       n_tracks=a)

    def agent_windows():
        for window in windows("agent"):
            if not needs_first_pass:
                whole.sounding |= np.any(window != 0, axis=(1, 2))
            yield window

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one step is a hundred tiny ops: threads only add overhead
    try:
        gains = play_streaming(FastModuleSteps(module), observation, agent_windows(),
                               rows=song.rows, n_slots=song.n_slots, n_chunks=t)
    finally:
        torch.set_num_threads(threads)
    return gains, whole.sounding


def _baseline_gains(policy, song: _SongPlan):
    """A baseline's gains, from the whole song in memory (baselines read whole stems)."""
    from mixing_env.data.slots import Placement, build_song, default_layout
    from rl_models.app.evaluate import play_songs
    from rl_models.app.mixdown.stems import StemReader

    audio = []
    for stem in song.stems:
        frames = stem.frames_at(song.env_rate)
        with StemReader(stem, sample_rate=song.env_rate, mono=True,
                        total_frames=frames) as reader:
            audio.append(reader.read(frames)[0])
    placement = Placement(tuple(song.slots), tuple(song.rows), (), ())
    built = build_song(song.name, placement, audio, layout=default_layout(),
                       sample_rate=song.env_rate, chunk_size=song.chunk,
                       stem_files=[str(s.path) for s in song.stems])
    record = play_songs(policy, {}, songs=[built])[0]
    sounding = np.array([np.any(y != 0) for y in audio])
    return record.gains[song.rows].astype(np.float32), sounding


def _write_outputs(song: _SongPlan, gains: np.ndarray, staged: _StagedOutputs, *, meta: dict,
                   target_lufs: float | None, true_peak: float, mono: bool,
                   full_automation: bool, unplaced: list[str], progress: bool) -> MixResult:
    """Render, master, and write every output under its temporary name, then commit."""
    from tqdm import tqdm

    from rl_models.app.mixdown.automation import (
        ROUNDING_DB,
        TOLERANCE_DB,
        TrackAutomation,
        finite_or_none,
        gain_at,
        thin_points,
        write_automation_csv,
        write_automation_json,
    )
    from rl_models.app.mixdown.loudness import LoudnessMeter, TruePeakMeter, db
    from rl_models.app.mixdown.master import PremixFile, master
    from rl_models.app.mixdown.panning import channel_matrix, pan_positions
    from rl_models.app.mixdown.reaper import write_reaper_project
    from rl_models.app.mixdown.render import chunk_centres_s, render_blocks
    from rl_models.app.plots import plot_automation

    name = song.name
    out_channels = max(s.channels for s in song.stems) if mono else 2
    pans = [0.0 if s.channels == 2 or mono else p
            for s, p in zip(song.stems, pan_positions(song.slots), strict=True)]
    matrices = [channel_matrix(s.channels, p, out_channels=out_channels, pan=not mono)
                for s, p in zip(song.stems, pans, strict=True)]

    premix = PremixFile(staged.temp(f"{name}_premix.f32"), out_channels)
    premix_loudness = LoudnessMeter(sample_rate=song.source_rate, channels=out_channels,
                                    total_frames=song.frames,
                                    block_s=min(0.4, song.frames / song.source_rate))
    premix_peak = TruePeakMeter(out_channels)
    append = premix.writer()
    bar = tqdm(total=song.frames, desc=f"{name}: rendering", unit="frame",
               disable=not progress)

    def keep(block: np.ndarray) -> None:
        append(block)
        premix_loudness.add(block)
        if target_lufs is None:  # the peak sets the gain only without a loudness target
            premix_peak.add(block)
        bar.update(block.shape[1])

    render_blocks(song.stems, gains, matrices, source_rate=song.source_rate,
                  env_rate=song.env_rate, chunk_size=song.chunk, total_frames=song.frames,
                  write=keep)
    bar.close()
    bar = tqdm(desc=f"{name}: mastering", unit="pass", disable=not progress)
    wav_tmp = staged.temp(f"{name}_mix.wav", suffix=".wav")
    mastered = master(premix, wav_tmp, sample_rate=song.source_rate, frames=song.frames,
                      premix_lufs=premix_loudness.loudness(), premix_peak=premix_peak.finish(),
                      target_lufs=target_lufs, true_peak_dbtp=true_peak,
                      on_pass=lambda: bar.update())
    bar.close()
    staged.discard(premix.path)
    if mastered.short_of(target_lufs):
        reduction = mastered.limiter.max_gain_reduction_db
        warnings.warn(f"loudness target {target_lufs:g} LUFS not reached: the true-peak "
                      f"ceiling {true_peak:g} dBTP holds it at {mastered.loudness_lufs:.1f} LUFS "
                      f"(the limiter takes off up to {reduction:.1f} dB)", stacklevel=3)

    times = chunk_centres_s(song.n_chunks, chunk_size=song.chunk, env_rate=song.env_rate)
    tracks = []
    for stem, slot, pan, g in zip(song.stems, song.slots, pans, gains, strict=True):
        keep_idx = (np.arange(len(times)) if full_automation
                    else thin_points(times, g, tolerance_db=TOLERANCE_DB - ROUNDING_DB))
        tracks.append(TrackAutomation(track=stem.path.stem, file=str(stem.path), slot=slot,
                                      channels=stem.channels, pan=pan, time_s=times[keep_idx],
                                      gain=g[keep_idx].astype(np.float64)))
    header = {
        "song": name,
        "checkpoint": meta["checkpoint"],
        "source_sample_rate": song.source_rate,
        "env_sample_rate": song.env_rate,
        "chunk_size": song.chunk,
        "chunk_seconds": song.chunk / song.env_rate,
        "n_chunks": song.n_chunks,
        "automation": {
            "points": "every chunk" if full_automation else "where the gain moves",
            "tolerance_db": None if full_automation else TOLERANCE_DB,
            "interpolation": "linear in gain between points, held before the first and "
                             "after the last; a point is a chunk's centre",
        },
        "placement": {
            "mode": "mono (no panning)" if mono else "stereo",
            "pan_law": "none" if mono else "constant power, -3 dB at the centre",
        },
        "target_lufs": target_lufs,
        "loudness_lufs": finite_or_none(mastered.loudness_lufs),
        "premix_loudness_lufs": finite_or_none(premix_loudness.loudness()),
        "true_peak_limit_dbtp": true_peak,
        "true_peak_dbtp": finite_or_none(mastered.true_peak_dbtp),
        "makeup_gain": mastered.makeup_gain,
        "makeup_gain_db": finite_or_none(db(mastered.makeup_gain)),
        "limiter": None if mastered.limiter is None else asdict(mastered.limiter),
        "mastering_passes": mastered.passes,
        "reaper_project": f"{name}.rpp",
        "unplaced_stems": unplaced,
    }
    json_tmp = write_automation_json(staged.temp(f"{name}_automation.json"), header, tracks)
    csv_tmp = write_automation_csv(staged.temp(f"{name}_automation.csv"), tracks)
    rpp_tmp = write_reaper_project(
        staged.temp(f"{name}.rpp"), tracks, lengths_s=[s.seconds for s in song.stems],
        sample_rate=song.source_rate, master_gain=mastered.makeup_gain,
        pan_law_db=0.0 if mono else 20.0 * math.log10(math.sqrt(0.5)))
    grid = np.linspace(times[0], times[-1], min(len(times), _PLOT_POINTS))
    png_tmp = plot_automation(
        staged.temp(f"{name}_automation.png", suffix=".png"), times_s=grid,
        gains=np.array([gain_at(grid, t.time_s, t.gain) for t in tracks]),
        names=[t.track for t in tracks], title=f"{name}: gain automation")
    out = staged.commit({
        wav_tmp: f"{name}_mix.wav", csv_tmp: f"{name}_automation.csv",
        json_tmp: f"{name}_automation.json", png_tmp: f"{name}_automation.png",
        rpp_tmp: f"{name}.rpp",
    })
    return MixResult(
        wav=out[f"{name}_mix.wav"], csv=out[f"{name}_automation.csv"],
        json=out[f"{name}_automation.json"], png=out[f"{name}_automation.png"],
        rpp=out[f"{name}.rpp"], makeup_gain=mastered.makeup_gain,
        loudness_lufs=mastered.loudness_lufs, true_peak_dbtp=mastered.true_peak_dbtp,
        limiter=mastered.limiter, slots={str(s.path): slot
                                         for s, slot in zip(song.stems, song.slots, strict=True)},
        unplaced=unplaced)


@contextlib.contextmanager
def _one_thread():
    """One BLAS thread while mixing (the agent's pass also sets one torch thread).

    A mix's arrays are small, and extra threads on a busy machine cost more than they give
    (measured: the log-mel of a window 4x slower with two).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


class _StagedOutputs:
    """Files written under temporary names in a folder, renamed together at the end.

    On leaving with an error, or for files never committed, the temporary files are removed
    (and the folder, when this made it and it is left empty).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._made = not self.folder.exists()
        self._temps: list[Path] = []

    def __enter__(self) -> _StagedOutputs:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def temp(self, final_name: str, suffix: str = "") -> Path:
        """A new temporary file in the folder for ``final_name`` (``suffix``: its ending)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{final_name}.", suffix=f".partial{suffix}",
                                   dir=self.folder)
        os.close(fd)
        self._temps.append(Path(tmp))
        return Path(tmp)

    def discard(self, path: Path) -> None:
        """Removes a temporary file now."""
        path.unlink(missing_ok=True)
        self._temps = [p for p in self._temps if p != path]

    def commit(self, names: dict[Path, str]) -> dict[str, Path]:
        """Renames each temporary file to its final name, readable by all as ``open`` makes."""
        umask = os.umask(0o022)
        os.umask(umask)
        out = {}
        for tmp, final in names.items():
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, self.folder / final)
            self._temps.remove(tmp)
            out[final] = self.folder / final
        return out

    def __exit__(self, *exc) -> None:
        for tmp in self._temps:
            tmp.unlink(missing_ok=True)
        if self._made and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
