"""The engineer's rules, one function each, in the order the engineer applies them.

Every rule reads the :class:`~mixing_env.engineer.analysis.StemAnalysis`, the stems' roles,
the :class:`~mixing_env.engineer.styles.Style` and the levels so far, and returns a change in
dB: a static change per stem [shape=(n,)] or a change per stem and chunk [shape=(n, T)].
Levels are gains relative to the raw stems; only their differences matter (the mix is
balanced, then brought to its output level once).

The reference constants below (each role's typical brightness, the lead's typical masked
share, the typical number of accompanying parts, the typical share of a part's energy in the
lead's range) centre the rules: a typical stem gets no correction, a stem unlike its role's
typical one gets one. They were measured once on 60 sampled songs of 6 s (seed 7) and are part
of the engineer, not refitted per dataset (the masking references on 40 songs of 12 s of
another seed, the mean of the two styles).
"""

from __future__ import annotations

import math

import numpy as np

from mixing_env.engineer.analysis import StemAnalysis, db, gated_loudness, moving_mean
from mixing_env.engineer.roles import BUSES, ROLE_BUS
from mixing_env.engineer.styles import Style

__all__ = [
    "CARVE_REFERENCE",
    "LEAD_MASKED_REFERENCE",
    "PARTS_REFERENCE",
    "MASKING_REFERENCE",
    "ROLE_CENTROID_OCT",
    "brightness",
    "bus_balance",
    "carve_for_lead",
    "duck_under_lead",
    "equal_loudness",
    "kick_against_bass",
    "lead_placement",
    "section_density",
    "tonal_balance",
    "unmask",
]

ROLE_CENTROID_OCT = {
    "kick": -3.2, "snare": -1.9, "hihat": 2.6, "toms": -2.5, "overheads": -0.75, "kit": -1.5,
    "bass": -1.8, "guitar": -0.25, "keys": -0.35, "pad": -0.55, "strings": 0.65, "brass": 0.1,
    "backing": -0.35, "lead": -0.7,
}
"""Each role's typical spectral centroid, octaves re 1 kHz."""
MASKING_REFERENCE = {
    "kick": 0.25, "snare": -0.15, "hihat": 0.2, "toms": 0.55, "overheads": 0.8, "kit": 0.3,
    "bass": 0.35, "guitar": 0.3, "keys": 0.4, "pad": 0.45, "strings": 0.4, "brass": 0.3,
    "backing": 0.35, "lead": 0.0,
}
"""Each role's typical masking index (:func:`masking_index`) at the levels the unmasking
rule sees."""
LEAD_MASKED_REFERENCE = 0.3
"""The lead's typical share of energy in bands where the accompaniment is louder."""
PARTS_REFERENCE = 3.0
"""The typical number of accompanying parts playing at once (besides kick, snare, bass)."""
CARVE_REFERENCE = 0.4
"""A band part's typical share of energy in the lead's range."""

_LIMIT_DB = 6.0  # no single correction moves a fader further than this
_MASK_SPAN_DB = 20.0  # a part 20 dB under the rest in a band is as buried as it gets
_LOW_HZ, _RANGE_DB = 150.0, 10.0  # the low end; the lead's range: bands within 10 dB of its top
_KICK_BASS_STRENGTH = 0.8
_TONAL_ROLES = {"kick": 0, "toms": 0, "bass": 1, "snare": 2, "hihat": 2, "overheads": 2,
                "kit": 2, "guitar": 3, "keys": 3, "pad": 3, "strings": 3, "brass": 3,
                "backing": 3}
"""The faders the tonal balance moves: kick and toms, bass, the kit's top, band and voices."""
_TONAL_ITERATIONS, _TONAL_LIMIT_DB, _SUB_HZ = 6, 8.0, 60.0
_DENSITY_LIMIT_DB = 4.0
_RIDE_WINDOW_S, _RIDE_SMOOTH_S, _RIDE_RANGE_DB = 0.6, 0.3, 20.0
_SECTION_WINDOW_S, _SECTION_RANGE_DB = 2.0, 20.0
_DUCK_ATTACK_S, _DUCK_RELEASE_S = 0.05, 0.35


def _bus(roles: list[str]) -> np.ndarray:
    return np.array([ROLE_BUS[r] for r in roles])


def _find(roles: list[str], role: str) -> int | None:
    return roles.index(role) if role in roles else None


def equal_loudness(a: StemAnalysis, roles: list[str], style: Style) -> np.ndarray:
    """Every stem to equal loudness, then its role's exception (static, dB).

    Equal loudness is where engineers start (Pestana & Reiss 2014); silent stems stay at 0.
    """
    lufs = np.where(np.isfinite(a.loudness), a.loudness, 0.0)
    return np.array([style.role_db[r] for r in roles]) - lufs


def brightness(a: StemAnalysis, roles: list[str], style: Style) -> np.ndarray:
    """Brighter than its role's typical stem: lower; darker: higher (static, dB)."""
    typical = np.array([ROLE_CENTROID_OCT[r] for r in roles])
    return -style.brightness_db_per_octave * (a.centroid_oct - typical)


def bus_balance(a: StemAnalysis, roles: list[str], style: Style, g: np.ndarray) -> np.ndarray:
    """Each bus's summed loudness set against the drum bus (static, dB per stem).

    A bus of many parts comes down part by part, one part alone comes up: the bus, not the
    part, has its place in the mix.
    """
    bus = _bus(roles)
    out = np.zeros(len(roles))
    drums = a.loudness_of(g, np.flatnonzero(bus == "drums"))
    anchor = drums if math.isfinite(drums) else 0.0
    for name in BUSES:
        idx = np.flatnonzero(bus == name)
        level = a.loudness_of(g, idx)
        if idx.size == 0 or not math.isfinite(level):
            continue
        out[idx] = anchor + (0.0 if name == "drums" else style.bus_db[name]) - level
    return out


def kick_against_bass(a: StemAnalysis, roles: list[str], style: Style,
                      g: np.ndarray) -> np.ndarray:
    """The kick moved so its low end sits ``kick_over_bass_db`` over the bass's (static)."""
    out = np.zeros(len(roles))
    kick, bass = _find(roles, "kick"), _find(roles, "bass")
    if kick is None or bass is None:
        return out
    low = a.freqs < _LOW_HZ
    kick_low = db(a.spectrum[kick, low].sum()) + g[kick]
    bass_low = db(a.spectrum[bass, low].sum()) + g[bass]
    move = _KICK_BASS_STRENGTH * (style.kick_over_bass_db - (kick_low - bass_low))
    out[kick] = float(np.clip(move, -_LIMIT_DB, _LIMIT_DB))
    return out


def masking_index(a: StemAnalysis, g: np.ndarray, stems: np.ndarray) -> np.ndarray:
    """How far the rest of the mix covers each stem: 1 buried, 0 level, -1 on top.

    A crude partial loudness (Moore, Glasberg & Baer 1997): over the mel bands of the stem's
    long-term spectrum, weighted by its energy there, the mean of ``clip(rest_dB - own_dB,
    -20, 20) / 20``, with every stem at its level ``g`` (dB); the lead is part of the rest.
    """
    lin = 10.0 ** (g / 10.0)[:, None] * a.spectrum  # (n, B)
    total = lin.sum(axis=0)
    out = np.zeros(len(stems))
    for k, i in enumerate(stems):
        own = lin[i]
        if own.sum() > 0:
            margin = np.clip(db(np.maximum(total - own, 0.0)) - db(own), -_MASK_SPAN_DB,
                             _MASK_SPAN_DB) / _MASK_SPAN_DB
            out[k] = float((own * margin).sum() / own.sum())
    return out


def unmask(a: StemAnalysis, roles: list[str], style: Style, g: np.ndarray) -> np.ndarray:
    """Parts the rest of the mix covers more than their role's typical part come up (static).

    Engineers lift what the band buries until it is heard (Ward, Reiss & Athwal 2012 balance
    multitracks on partial loudness): ``unmask_db`` per unit of masking index
    (:func:`masking_index`) above the role's typical index (:data:`MASKING_REFERENCE`). The
    lead is placed by its own rule.
    """
    out = np.zeros(len(roles))
    idx = np.array([i for i, r in enumerate(roles) if r != "lead"], dtype=np.int64)
    if style.unmask_db == 0 or idx.size == 0:
        return out
    typical = np.array([MASKING_REFERENCE[roles[i]] for i in idx])
    out[idx] = style.unmask_db * (masking_index(a, g, idx) - typical)
    return np.clip(out, -_LIMIT_DB, _LIMIT_DB)


def carve_for_lead(a: StemAnalysis, roles: list[str], style: Style) -> np.ndarray:
    """Band and voices parts with much of their energy in the lead's range dip (static).

    "Carving room for the vocal": a part that sits where the lead sings is pulled down, one
    that sits elsewhere is left up (Izhaki 2017; masking, Ward, Reiss & Athwal 2012).
    """
    out = np.zeros(len(roles))
    lead = _find(roles, "lead")
    if lead is None or style.carve_db == 0:
        return out
    lead_spectrum = a.spectrum[lead]
    in_range = db(lead_spectrum) > db(lead_spectrum.max()) - _RANGE_DB
    bus = _bus(roles)
    for i in np.flatnonzero(np.isin(bus, ("band", "voices"))):
        total = a.spectrum[i].sum()
        if total > 0:
            share = a.spectrum[i, in_range].sum() / total
            out[i] = -style.carve_db * (share - CARVE_REFERENCE) / CARVE_REFERENCE
    return np.clip(out, -_LIMIT_DB, _LIMIT_DB)


def target_spectrum(freqs: np.ndarray, style: Style) -> np.ndarray:
    """The style's target long-term spectrum (dB per mel band, up to a constant)."""
    octaves = np.log2(freqs / 1000.0)
    roll_off = np.where(freqs < _SUB_HZ, 12.0 * np.log2(_SUB_HZ / freqs), 0.0)
    return style.tonal_slope_db_per_octave * octaves - roll_off


def tonal_balance(a: StemAnalysis, roles: list[str], style: Style, g: np.ndarray) -> np.ndarray:
    """Move four faders (kick, bass, the kit's top, band and voices) toward the target tone.

    The accompaniment's long-term spectrum is brought toward the style's curve (engineers mix
    toward a tonal balance, and commercial mixes converge on one: Pestana et al. 2013), by a
    few Gauss-Newton steps of a ridge-regularised least squares in dB (weight
    ``tonal_weight``), the overall level free.

    Returns:
        Static change per stem, dB (0 for the lead and when ``tonal_weight`` is 0).
    """
    out = np.zeros(len(roles))
    idx = np.array([i for i, r in enumerate(roles) if r in _TONAL_ROLES], dtype=np.int64)
    if style.tonal_weight <= 0 or idx.size == 0:
        return out
    fader = np.array([_TONAL_ROLES[roles[i]] for i in idx])
    used = np.unique(fader)
    A = (fader[:, None] == used[None, :]).astype(np.float64)  # stem -> its fader
    base = 10.0 ** (g[idx] / 10.0)[:, None] * a.spectrum[idx]  # (k, B)
    if not np.any(base > 0):
        return out
    target = target_spectrum(a.freqs, style)
    d = np.zeros(len(used))
    for _ in range(_TONAL_ITERATIONS):
        parts = 10.0 ** ((A @ d) / 10.0)[:, None] * base
        mix = parts.sum(axis=0) + 1e-30
        residual = db(mix) - target
        residual -= residual.mean()  # the overall level is free
        J = (parts.T @ A) / mix[:, None]  # d(mix dB)/d(fader dB), (B, faders)
        J -= J.mean(axis=0)
        H = J.T @ J + style.tonal_weight * np.eye(len(used))
        d = np.clip(d + np.linalg.solve(H, -(J.T @ residual) - style.tonal_weight * d),
                    -_TONAL_LIMIT_DB, _TONAL_LIMIT_DB)
    out[idx] = A @ d
    return out


def lead_placement(a: StemAnalysis, roles: list[str], style: Style, g: np.ndarray,
                   moves: np.ndarray | None = None) -> tuple[float, np.ndarray, dict]:
    """The lead over the accompaniment: static level, per-chunk moves, and what decided them.

    The lead sits ``lead_over_db`` over the whole accompaniment while it plays, more when the
    accompaniment masks it (its energy share in bands where the band is louder; Ward et al.
    2012), more in dense passages (accompanying parts playing over
    :data:`PARTS_REFERENCE`), and its fader is ridden to keep it a steady distance above
    the moving accompaniment (Senior 2011, on vocal rides).

    Args:
        a: The analysis.
        roles: Each stem's role.
        style: The style.
        g: Static levels so far, dB [shape=(n,)].
        moves: The band's per-chunk moves so far (sections, ducking), dB [shape=(n, T)]: the
            lead is ridden over the band as it is heard.

    Returns:
        ``(static change of the lead, per-chunk change of the lead [shape=(T,)], decisions)``.
    """
    T = a.n_chunks
    lead = _find(roles, "lead")
    if lead is None or not math.isfinite(a.loudness[lead]):
        return 0.0, np.zeros(T), {}
    others = np.array([i for i in range(len(roles)) if i != lead], dtype=np.int64)
    lin = 10.0 ** (g[others] / 10.0)
    heard = lin[:, None] * (1.0 if moves is None else 10.0 ** (moves[others] / 10.0))
    band_power = (heard * a.power[others]).sum(axis=0)
    band = float(gated_loudness(band_power * a.active[lead], chunk_s=a.chunk_s))
    if not math.isfinite(band):  # nothing accompanies the lead
        return 0.0, np.zeros(T), {}
    # How much of the lead the band covers, with the lead at its base place.
    band_spectrum = (lin[:, None] * a.spectrum[others]).sum(axis=0)
    lead_spectrum = 10.0 ** ((band + style.lead_over_db - a.loudness[lead]) / 10.0) \
        * a.spectrum[lead]
    masked = float(lead_spectrum[band_spectrum > lead_spectrum].sum()
                   / max(lead_spectrum.sum(), 1e-30))
    over = style.lead_over_db + style.lead_masking_db * (masked - LEAD_MASKED_REFERENCE)
    static = band + over - (a.loudness[lead] + g[lead])
    # Dense passages: accompanying parts playing now (kick, snare and bass are the floor).
    core = [i for i in others if roles[i] not in ("kick", "snare", "bass")]
    playing = moving_mean(a.active[core].sum(axis=0)[None].astype(np.float64),
                          a.chunks(1.0))[0] if core else np.zeros(T)
    density = np.clip(style.density_db_per_part * (playing - PARTS_REFERENCE),
                      -_DENSITY_LIMIT_DB, _DENSITY_LIMIT_DB)
    ride = _ride(a, lead, g[lead] + static, band_power, style.ride_strength)
    return float(static), density + ride, {"lead_masked_share": masked, "lead_over_db": over}


def _ride(a: StemAnalysis, lead: int, lead_db: float, band_power: np.ndarray,
          strength: float) -> np.ndarray:
    """The lead's fader ride, per chunk (dB).

    Takes ``strength`` of the lead's short-term distance above the band, around its median,
    out where it sings (breaths are not ridden); held between phrases and smoothed like a
    hand on a fader.
    """
    T = a.n_chunks
    if strength == 0:
        return np.zeros(T)
    window = a.chunks(_RIDE_WINDOW_S)
    voice = db(moving_mean((10.0 ** (lead_db / 10.0) * a.power[lead])[None], window)[0])
    band = db(moving_mean(band_power[None], window)[0])
    on = a.active[lead] & (voice > voice.max() - _RIDE_RANGE_DB)
    if not on.any():
        return np.zeros(T)
    distance = voice - band
    ride = np.zeros(T)
    ride[on] = np.clip(strength * (np.median(distance[on]) - distance[on]), -_LIMIT_DB,
                       _LIMIT_DB)
    held = np.where(on, np.arange(T), 0)
    np.maximum.accumulate(held, out=held)  # between phrases the fader stays where it was
    return moving_mean(ride[held][None], a.chunks(_RIDE_SMOOTH_S))[0]


def section_density(a: StemAnalysis, roles: list[str], style: Style,
                    g: np.ndarray) -> np.ndarray:
    """Band and voices buses follow the arrangement's density (per chunk, dB).

    When parts leave (a sparse verse), those left come up; when parts join (a full
    chorus), each comes down: ``section_strength`` of the bus's short-term swing around its
    median is taken out, where the bus plays.
    """
    out = np.zeros((len(roles), a.n_chunks))
    if style.section_strength == 0:
        return out
    bus = _bus(roles)
    window = a.chunks(_SECTION_WINDOW_S)
    for name in ("band", "voices"):
        idx = np.flatnonzero(bus == name)
        if idx.size == 0:
            continue
        power = (10.0 ** (g[idx] / 10.0)[:, None] * a.power[idx]).sum(axis=0)
        level = db(moving_mean(power[None], window)[0])
        on = level > level.max() - _SECTION_RANGE_DB
        if on.sum() < 2:
            continue
        move = np.clip(-style.section_strength * (level - np.median(level[on])), -_LIMIT_DB,
                       _LIMIT_DB) * on
        out[idx] += move[None, :]
    return out


def duck_under_lead(a: StemAnalysis, roles: list[str], style: Style) -> np.ndarray:
    """Band and voices parts dip by ``duck_db`` while the lead plays (per chunk, dB).

    A sidechain from the lead's activity with 50 ms attack and 350 ms release: the
    "carving room for the vocal" of practice (Izhaki 2017).
    """
    out = np.zeros((len(roles), a.n_chunks))
    lead = _find(roles, "lead")
    if lead is None or style.duck_db == 0:
        return out
    sidechain = _attack_release(a.active[lead].astype(np.float64),
                                math.exp(-a.chunk_s / _DUCK_ATTACK_S),
                                math.exp(-a.chunk_s / _DUCK_RELEASE_S))
    ducked = np.isin(_bus(roles), ("band", "voices"))
    out[ducked] = -style.duck_db * sidechain[None, :]
    return out


def _attack_release(x: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole smoother with separate rise and fall coefficients."""
    out = np.empty_like(x)
    y = float(x[0])
    for t, v in enumerate(x):
        a = attack if v > y else release
        y = a * y + (1.0 - a) * float(v)
        out[t] = y
    return out
