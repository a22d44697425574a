"""The mixing engineer: per-chunk fader gains for a song's raw stems.

The model and the sources its habits come from are in ``docs/mixing_model.md``. In short,
for stem ``i`` at chunk ``t`` (all in dB)::

    gain_i[t] = target_i - loudness_i          static balance: role level relative to the lead
              + section_i[t]                   section moves, ramped at boundaries
              + duck_i[t]                      competing parts dip while the lead sings
              + ride_i[t]                      the lead's fader follows its own level (lead only)

``loudness_i`` is the stem's integrated loudness (ITU-R BS.1770), so the balance is set on
what is heard, not on peaks. ``target_i = ROLE_LEVEL_DB[role] + group offset + own offset``:
the group offset (drums, bass, band, voices) is shared by a song's parts of a group, the own
offset is the stem's, and both are drawn per song, so a role's level spreads by several dB
from song to song, as between real mixes. Optionally (``masking_db > 0``) the target also
takes a content term, a lift for stems the rest of the band masks (:mod:`.masking`), and
``own_sd_scale`` / ``group_sd_scale`` shrink the random own / group offsets. Everything
is computed on the chunk grid the environment acts on, so the gains are constant within a
chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixing_env.data.sampled.masking import masking_index, masking_lift_db
from mixing_env.errors import ConfigError
from mixing_env.metrics import integrated_loudness

__all__ = [
    "DUCKED_ROLES",
    "MIX_OPTION_DEFAULTS",
    "ROLE_GROUP",
    "ROLE_LEVEL_DB",
    "SECTION_MOVES_DB",
    "MixDecisions",
    "check_mix_options",
    "mix_gains_db",
]

ROLE_LEVEL_DB = {
    "kick": (-3.0, 2.5),
    "snare": (-4.0, 2.5),
    "hihat": (-13.0, 3.5),
    "toms": (-9.0, 3.0),
    "overheads": (-11.0, 3.0),
    "bass": (-4.0, 2.5),
    "guitar": (-8.0, 3.0),
    "keys": (-9.0, 3.0),
    "pad": (-13.0, 3.5),
    "strings": (-11.0, 3.0),
    "brass": (-9.0, 3.0),
    "lead": (0.0, 0.0),
    "backing": (-9.0, 3.0),
}
"""Per role: (mean, standard deviation) of its loudness relative to the lead, in LU."""

ROLE_GROUP = {
    "kick": "drums", "snare": "drums", "hihat": "drums", "toms": "drums", "overheads": "drums",
    "bass": "bass", "guitar": "band", "keys": "band", "pad": "band", "strings": "band",
    "brass": "band", "backing": "voices", "lead": "lead",
}
"""Roles that move together from song to song (a drum-heavy mix lifts the whole kit)."""

GROUP_SD_DB = 2.0
"""Standard deviation (dB) of a group's per-song offset."""

SECTION_MOVES_DB = {
    "kick": {"chorus": 1.0},
    "snare": {"chorus": 1.0, "bridge": -1.0},
    "hihat": {"intro": 2.0, "chorus": -1.0},
    "overheads": {"chorus": 1.5},
    "bass": {"intro": -2.0, "chorus": 1.0},
    "guitar": {"intro": 2.0, "verse": -2.0, "chorus": 2.0},
    "keys": {"intro": 2.0, "verse": 1.0, "chorus": -1.5},
    "pad": {"intro": 2.0, "verse": -3.0, "outro": 1.0},
    "strings": {"verse": -2.0, "chorus": 1.0, "bridge": 2.0},
    "brass": {"chorus": 1.5, "bridge": 1.0},
    "lead": {"chorus": 1.5, "bridge": 0.5},
    "backing": {"bridge": -2.0},
}
"""Typical fader moves per role and section (dB), scaled per song and jittered per stem."""

DUCKED_ROLES = frozenset({"guitar", "keys", "pad", "strings", "brass", "backing"})
"""Roles that share the lead's range and are dipped while it sings (each with chance 0.75)."""

_RAMP_S = 0.12  # section moves: a fader pushed over about a tenth of a second
_DUCK_ATTACK_S, _DUCK_RELEASE_S = 0.05, 0.35
_RIDE_WINDOW_S = 0.6  # short-term level window the engineer listens over
_RIDE_SMOOTH_S = 0.3  # how fast a hand moves the fader
_RIDE_LIMIT_DB = 6.0
_RIDE_RANGE_DB = 20.0  # the fader follows the voice only within 20 dB of its loudest
_ACTIVE_BELOW_PEAK_DB = 30.0  # a chunk within 30 dB of the stem's loudest is "playing"


MIX_OPTION_DEFAULTS = {"masking_db": 0.0, "own_sd_scale": 1.0, "group_sd_scale": 1.0}
"""The optional settings of :func:`mix_gains_db` and their defaults (the default model)."""


def check_mix_options(**options: float) -> None:
    """Check settings of :data:`MIX_OPTION_DEFAULTS`: each must be a finite number >= 0.

    Raises:
        ConfigError: Naming the first setting that is not.
    """
    for name, value in options.items():
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value < 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {name}={value!r}")


@dataclass
class MixDecisions:
    """What the engineer chose for one song (saved in ``sampled.json``).

    Attributes:
        target_db: Per stem, its loudness relative to the lead (LU).
        section_scale: How strongly this engineer makes section moves.
        duck_db: Per stem, the dip while the lead sings (0 for parts not ducked).
        ride_strength: Share of the lead's level swings the fader takes out (0..1).
        ride_range_db: (min, max) of the lead's riding over the song.
        masking_index: Per stem, its masking index (:func:`.masking.masking_index`), or
            None when the content term is off.
        masking_lift_db: Per stem, the lift the content term adds to ``target_db``
            (included there), or None when it is off.
    """

    target_db: list[float]
    section_scale: float
    duck_db: list[float]
    ride_strength: float
    ride_range_db: tuple[float, float]
    masking_index: list[float] | None = None
    masking_lift_db: list[float] | None = None


def _moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along the last axis, edges padded with the edge value."""
    width = max(int(width), 1)
    pad = (width // 2, width - 1 - width // 2)
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [pad], mode="edge")
    c = np.cumsum(xp, axis=-1, dtype=np.float64)
    c = np.concatenate([np.zeros(x.shape[:-1] + (1,)), c], axis=-1)
    return (c[..., width:] - c[..., :-width]) / width


def _attack_release(x: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole smoother with separate rise and fall coefficients (per sample of ``x``)."""
    out = np.empty_like(x, dtype=np.float64)
    y = float(x[0])
    for t, v in enumerate(x):
        a = attack if v > y else release
        y = a * y + (1 - a) * float(v)
        out[t] = y
    return out


def _db(p: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.maximum(p, 1e-20))


def mix_gains_db(
    stems: np.ndarray,
    *,
    roles: list[str],
    chunk_sections: np.ndarray,
    rng: np.random.Generator,
    sample_rate: int,
    chunk_size: int,
    masking_db: float = 0.0,
    own_sd_scale: float = 1.0,
    group_sd_scale: float = 1.0,
) -> tuple[np.ndarray, MixDecisions]:
    """The engineer's fader gains, per stem and chunk, in dB.

    Args:
        stems: float32 [shape=(n_stems, n)] raw stems.
        roles: Each stem's role (keys of :data:`ROLE_LEVEL_DB`); exactly one ``"lead"``.
        chunk_sections: [shape=(T,)] section name of each chunk, T = ceil(n / chunk_size).
        rng: The song's generator.
        sample_rate: Hz.
        chunk_size: Samples per chunk.
        masking_db: dB of lift per unit of masking index (0: no content term, the default).
        own_sd_scale: Multiplies each role's own-offset standard deviation (1: the default).
        group_sd_scale: Multiplies the group offsets' standard deviation (1: the default).
            Neither option changes the random draws, so the rest of the song stays the same.

    Returns:
        ``(gains_db [shape=(n_stems, T)], decisions)``.
    """
    n_stems, n = stems.shape
    T = len(chunk_sections)
    lead = roles.index("lead")
    chunk_s = chunk_size / sample_rate
    padded = np.zeros((n_stems, T * chunk_size), dtype=np.float64)
    padded[:, :n] = stems
    power = (padded.reshape(n_stems, T, chunk_size) ** 2).mean(axis=2)

    # 1. Static balance on loudness, with per-song group and per-stem offsets.
    loud = np.array([integrated_loudness(s, sample_rate=sample_rate) for s in stems])
    loud = np.where(np.isfinite(loud), loud, _db(power.max(axis=1)))
    group_sd = GROUP_SD_DB * group_sd_scale
    group_off = {g: rng.normal(0, group_sd) for g in sorted(set(ROLE_GROUP.values()))}
    group_off["lead"] = 0.0
    target = np.array([
        ROLE_LEVEL_DB[r][0] + group_off[ROLE_GROUP[r]]
        + rng.normal(0, ROLE_LEVEL_DB[r][1] * own_sd_scale)
        for r in roles
    ])
    index = lift = None
    if masking_db:  # the content term: a deterministic function of the stems and their roles
        means = np.array([ROLE_LEVEL_DB[r][0] for r in roles])
        index = masking_index(stems, levels_db=means, loudness=loud, sample_rate=sample_rate,
                              skip=lead)
        lift = masking_lift_db(index, masking_db, roles=roles, skip=lead)
        target = target + lift
    gains = np.repeat((target - loud)[:, None], T, axis=1)

    # 2. Section moves, ramped over _RAMP_S at the boundaries.
    scale = float(rng.uniform(0.5, 1.5))
    ramp = max(int(round(_RAMP_S / chunk_s)), 1)
    for i, r in enumerate(roles):
        moves = SECTION_MOVES_DB.get(r, {})
        jitter = {s: rng.normal(0, 0.75) for s in sorted(set(chunk_sections))}
        step = np.array([scale * moves.get(s, 0.0) + jitter[s] for s in chunk_sections])
        gains[i] += _moving_mean(step[None, :], ramp)[0]

    # 3. Ducking: parts in the lead's range dip while the lead sings.
    lead_db = _db(power[lead])
    singing = (lead_db > lead_db.max() - _ACTIVE_BELOW_PEAK_DB).astype(np.float64)
    a_att = np.exp(-chunk_s / _DUCK_ATTACK_S)
    a_rel = np.exp(-chunk_s / _DUCK_RELEASE_S)
    sidechain = _attack_release(singing, a_att, a_rel)
    depth = float(rng.uniform(1.0, 4.0))
    duck = np.array([
        depth * rng.uniform(0.6, 1.2) if r in DUCKED_ROLES and rng.random() < 0.75 else 0.0
        for r in roles
    ])
    gains -= duck[:, None] * sidechain[None, :]

    # 4. Riding the lead: keep it a steady distance above the band as its own level moves.
    win = max(int(round(_RIDE_WINDOW_S / chunk_s)), 1)
    lin = 10 ** (gains / 10) * power
    band = _db(_moving_mean(np.delete(lin, lead, axis=0).sum(axis=0)[None], win)[0])
    voice = _db(_moving_mean(lin[lead][None], win)[0])
    on = (singing > 0) & (voice > voice.max() - _RIDE_RANGE_DB)  # breaths are not ridden
    strength = float(rng.uniform(0.5, 0.9))
    ride = np.zeros(T)
    if on.any():
        distance = voice - band
        wanted = np.median(distance[on])
        ride[on] = np.clip(strength * (wanted - distance[on]), -_RIDE_LIMIT_DB, _RIDE_LIMIT_DB)
        idx = np.where(on, np.arange(T), 0)
        np.maximum.accumulate(idx, out=idx)  # between phrases the fader stays where it was
        ride = ride[idx]
        ride = _moving_mean(ride[None], max(int(round(_RIDE_SMOOTH_S / chunk_s)), 1))[0]
    gains[lead] += ride

    decisions = MixDecisions(
        target_db=[float(x) for x in target],
        section_scale=scale,
        duck_db=[float(x) for x in duck],
        ride_strength=strength,
        ride_range_db=(float(ride.min()), float(ride.max())),
        masking_index=None if index is None else [float(x) for x in index],
        masking_lift_db=None if lift is None else [float(x) for x in lift],
    )
    return gains, decisions
