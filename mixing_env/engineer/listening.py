"""What an engineer listens to, as observation features: one block per track and chunk.

An agent that should learn how an engineer sets levels needs to hear what the engineer
hears: how loud each stem is while it plays, its tone, how much of it the rest of the band
covers, which bus it sits on and how crowded that bus is, and how the arrangement's density
and the lead move through the song. :func:`listening_features` measures these from the stems
(:func:`~mixing_env.engineer.analysis.analyse_stems`, with every stem at equal loudness, so no
engineer's decision is baked in) and gives them in dB-like units, one row per slot and chunk:

====  =====================  ==========================================================
 #    name                   what (units)
====  =====================  ==========================================================
 0    ``loudness``           the stem's gated loudness while it plays (LUFS; -100 silent)
 1    ``centroid``           spectral centroid of its long-term spectrum (0.1 octave re
                             1 kHz: +10 is an octave brighter)
 2    ``low_share``          share of its energy below 150 Hz (dB, floor -60)
 3    ``masked``             how far the rest covers it: energy-weighted mean of
                             ``clip(rest - own, -20, 20)`` dB per mel band
 4    ``lead_range``         share of its energy in the lead's range (dB, floor -60)
 5    ``bus_size``           10 log10 of the stems on its bus (drums, bass, band, voices)
 6    ``lead_masked``        the lead's ``masked`` (the song's; 0 without a lead)
 7    ``n_tracks``           10 log10 of the song's real tracks
 8    ``density``            accompanying parts playing now (besides kick, snare, bass and
                             the lead), over 1 s, times 3
 9    ``bus_swing``          its bus's level over 2 s around the bus's median (dB)
 10   ``lead_on``            the lead playing, attack 50 ms / release 350 ms (0..10)
 11   ``lead_distance``      the lead's level over the band's, over 0.6 s, around its median
                             (dB)
====  =====================  ==========================================================

Rows 0-7 are the same at every chunk (whole-song measures, as an engineer mixing a finished
multitrack knows them); 8-11 follow the song. Dummy slots read -100 loudness and 0 (or the
floor) elsewhere; the song-wide columns (6-8, 10, 11) are the same on every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixing_env.engineer.analysis import StemAnalysis, analyse_stems, db, moving_mean
from mixing_env.engineer.roles import BUSES, ROLE_BUS, slot_roles

__all__ = ["LISTENING_FEATURES", "SongListening", "listening_feature_top", "listening_features"]

LISTENING_FEATURES = ("loudness", "centroid", "low_share", "masked", "lead_range", "bus_size",
                      "lead_masked", "n_tracks", "density", "bus_swing", "lead_on",
                      "lead_distance")
"""The columns of :func:`listening_features`, in order."""

_FLOOR_DB, _SILENT_LUFS = -60.0, -100.0
_SPAN_DB = 20.0
_LOW_HZ, _RANGE_DB = 150.0, 10.0
_CORE = frozenset({"kick", "snare", "bass", "lead"})


def _share_db(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    return np.maximum(db(part / np.maximum(whole, 1e-30)), _FLOOR_DB)


def _masked_db(spectra: np.ndarray) -> np.ndarray:
    """Per row, the energy-weighted mean of clip(rest - own) dB over the bands."""
    total = spectra.sum(axis=0)
    rest = np.maximum(total[None] - spectra, 0.0)
    margin = np.clip(db(rest) - db(spectra), -_SPAN_DB, _SPAN_DB)
    weight = spectra / np.maximum(spectra.sum(axis=1, keepdims=True), 1e-30)
    return (weight * margin).sum(axis=1)


def _smoothed_activity(active: np.ndarray, chunk_s: float) -> np.ndarray:
    """The lead's activity through a 50 ms attack / 350 ms release one-pole smoother."""
    attack, release = math.exp(-chunk_s / 0.05), math.exp(-chunk_s / 0.35)
    out = np.empty(active.size)
    y = float(active[0])
    for t, v in enumerate(active.astype(np.float64)):
        a = attack if v > y else release
        y = a * y + (1.0 - a) * v
        out[t] = y
    return out


def listening_feature_top(sample_rate: int, n_slots: int) -> float:
    """The largest value a listening column can take, for the observation space's bound.

    The centroid reaches ``10 log2(Nyquist / 1 kHz)`` (about +45 at 44.1 kHz) and the density
    three times the parts playing; the level columns (swings, distances) stay well inside
    +-60 dB of their medians.
    """
    return max(10.0 * math.log2(sample_rate / 2 / 1000.0), 3.0 * n_slots, 60.0)


def _around_median(level_db: np.ndarray, on: np.ndarray) -> np.ndarray:
    if on.sum() < 2:
        return np.zeros_like(level_db)
    return np.where(on, level_db - np.median(level_db[on]), 0.0)


def listening_features(stems: np.ndarray, *, slot_names: list[str], stem_files: dict[str, str],
                       track_mask: np.ndarray, n_valid: int, sample_rate: int,
                       analysis: StemAnalysis | None = None) -> np.ndarray:
    """The listening block of every slot and chunk (see the module docstring).

    Args:
        stems: The song's chunked stems [shape=(C, T, chunk)] (a memory map is fine).
        slot_names: The C slot names.
        stem_files: Slot -> source file (``Song.stem_files``), for the roles.
        track_mask: 1 real, 0 dummy [shape=(C,)].
        n_valid: Chunks that hold the song (the rest is padding).
        sample_rate: Hz.
        analysis: The real tracks' analysis in slot order when it is at hand (a generated
            song's ``measures["analysis"]``); None measures the stems here.

    Returns:
        float32 [shape=(C, T, len(LISTENING_FEATURES))].
    """
    C, T, chunk = stems.shape
    mask = np.asarray(track_mask) > 0
    real = np.flatnonzero(mask)
    out = np.zeros((C, T, len(LISTENING_FEATURES)), np.float32)
    out[:, :, 0] = _SILENT_LUFS
    out[:, :, 2] = out[:, :, 4] = _FLOOR_DB
    if real.size == 0:
        return out
    a = analysis
    if a is None or a.n_chunks != n_valid:
        x = np.asarray(stems[real, :n_valid], dtype=np.float32).reshape(real.size, -1)
        a = analyse_stems(x, sample_rate=sample_rate, chunk_size=chunk)
    listening = SongListening.measure(a, slot_roles([slot_names[i] for i in real], stem_files))
    block = listening.chunks(0, T)
    out[real] = block[:-1]
    out[~mask] = block[-1]
    return out


@dataclass(frozen=True)
class SongListening:
    """A song's listening block in parts, from which any range of chunks is built.

    The whole-song columns (0-7) of each track, and the per-chunk series behind columns 8-11
    (each the song's or a bus's: a few values per chunk, not one per track), measured once
    from the analysis of the whole song; :meth:`chunks` builds the block of any range of
    chunks from them. :func:`listening_features` builds the whole song's block at once; a mix
    that streams the song (``rl_models.app.mixdown.observation``) builds it window by window.

    Attributes:
        static: Columns 0-7 of each real track [shape=(n, 8)].
        density: Column 8 over the song [shape=(T,)].
        bus_swing: Column 9 of each bus over the song [shape=(len(BUSES) + 1, T)]: the
            buses in :data:`~mixing_env.engineer.roles.BUSES` order, then zeros (the lead).
        bus_row: Each track's row of ``bus_swing`` [shape=(n,)].
        lead_on: Column 10 over the song [shape=(T,)].
        lead_distance: Column 11 over the song [shape=(T,)].
    """

    static: np.ndarray
    density: np.ndarray
    bus_swing: np.ndarray
    bus_row: np.ndarray
    lead_on: np.ndarray
    lead_distance: np.ndarray

    @property
    def n_chunks(self) -> int:
        """T, the chunks measured (later chunks repeat the last: padding)."""
        return int(self.density.shape[0])

    @classmethod
    def measure(cls, a: StemAnalysis, roles: list[str]) -> SongListening:
        """The parts of a song's block.

        Args:
            a: The real tracks' analysis, in slot order.
            roles: Each real track's role (:func:`~mixing_env.engineer.roles.slot_roles`).
        """
        n, T = a.power.shape
        playing = np.isfinite(a.loudness)
        at_equal_loudness = (10.0 ** (-np.where(playing, a.loudness, 0.0) / 10.0))[:, None]
        power = a.power * at_equal_loudness
        power[~playing] = 0.0
        bus = np.array([ROLE_BUS[r] for r in roles])
        lead = roles.index("lead") if "lead" in roles else None
        static = _static_columns(a, bus, lead, playing, at_equal_loudness)

        density = np.zeros(T)
        accompanying = [k for k, r in enumerate(roles) if r not in _CORE]
        if accompanying:
            parts = a.active[accompanying].sum(axis=0).astype(np.float64)
            density = 3.0 * moving_mean(parts[None], a.chunks(1.0))[0]
        bus_swing = np.zeros((len(BUSES) + 1, T))
        for b, name in enumerate(BUSES):
            rows = np.flatnonzero(bus == name)
            if rows.size:
                level = db(moving_mean(power[rows].sum(axis=0)[None], a.chunks(2.0))[0])
                on = level > level.max() - 20.0
                bus_swing[b] = _around_median(level, on)
        bus_row = np.array([BUSES.index(b) if b in BUSES else len(BUSES) for b in bus])
        lead_on = lead_distance = np.zeros(T)
        if lead is not None:
            lead_on = 10.0 * _smoothed_activity(a.active[lead], a.chunk_s)
            others = [k for k in range(n) if k != lead]
            window = a.chunks(0.6)
            voice = db(moving_mean(power[lead][None], window)[0])
            band = db(moving_mean(power[others].sum(axis=0)[None], window)[0]) if others \
                else np.full(T, -200.0)
            on = a.active[lead] & (voice > voice.max() - 20.0)
            lead_distance = _around_median(voice - band, on)
        return cls(static=static, density=density, bus_swing=bus_swing, bus_row=bus_row,
                   lead_on=lead_on, lead_distance=lead_distance)

    def chunks(self, start: int, stop: int) -> np.ndarray:
        """The block of chunks ``start`` to ``stop``: each real track's, then a dummy slot's.

        Chunks past the measured ones repeat the last (the song's padding).

        Returns:
            float32 [shape=(n + 1, stop - start, len(LISTENING_FEATURES))].
        """
        n = self.static.shape[0]
        t = np.minimum(np.arange(start, stop), self.n_chunks - 1)
        out = np.zeros((n + 1, t.size, len(LISTENING_FEATURES)), np.float32)
        out[:n, :, :8] = self.static[:, None]
        # A dummy slot plays nothing and shares the song-wide columns.
        out[n, :, 0] = _SILENT_LUFS
        out[n, :, 2] = out[n, :, 4] = _FLOOR_DB
        out[n, :, 6:8] = self.static[0, 6:8]
        out[:, :, 8] = self.density[t]
        out[:n, :, 9] = self.bus_swing[self.bus_row[:, None], t]
        out[:, :, 10] = self.lead_on[t]
        out[:, :, 11] = self.lead_distance[t]
        return out


def _static_columns(a: StemAnalysis, bus: np.ndarray, lead: int | None, playing: np.ndarray,
                    at_equal_loudness: np.ndarray) -> np.ndarray:
    """Columns 0-7 of each track; 6 and 7 are the song's (the first track's), as on every row."""
    equal = a.spectrum * at_equal_loudness
    equal[~playing] = 0.0
    total = equal.sum(axis=1)
    static = np.zeros((len(bus), 8))
    static[:, 0] = np.where(playing, a.loudness, _SILENT_LUFS)
    static[:, 1] = 10.0 * a.centroid_oct
    static[:, 2] = _share_db(equal[:, a.freqs < _LOW_HZ].sum(axis=1), total)
    static[:, 3] = _masked_db(equal)
    static[:, 4] = _FLOOR_DB
    if lead is not None:
        spectrum = a.spectrum[lead]
        in_range = db(spectrum) > db(spectrum.max()) - _RANGE_DB
        static[:, 4] = _share_db(equal[:, in_range].sum(axis=1), total)
        static[:, 6] = static[lead, 3]
    static[:, 5] = [10.0 * math.log10((bus == b).sum()) if b != "lead" else 0.0 for b in bus]
    static[:, 7] = 10.0 * math.log10(len(bus))
    static[~playing, 1:] = np.where(np.arange(1, 8) == 7, static[~playing, 1:], 0.0)
    static[:, 6:8] = static[0, 6:8]
    return static
