"""The engineer: per-chunk fader gains for a song's raw stems, decided from what they sound like.

:class:`Engineer` applies the rules of :mod:`mixing_env.engineer.rules` in order, for one
:class:`~mixing_env.engineer.styles.Style`::

    static_i  = equal loudness + role exception          (where engineers start)
              + brightness                               (bright parts sit lower)
              + bus balance                              (buses, not parts, have a place)
              + kick against bass                        (who owns the low end)
              + unmasking                                (buried parts come up)
              + carving room for the lead                (parts in the lead's range dip)
              + tonal balance                            (the band toward a target tone)
              + lead placement                           (over the band, more when masked)
              + inconsistency ~ N(0, inconsistency)      (the engineer's random part)
    gain_i[t] = static_i + section density_i[t] + ducking_i[t]     (the band as it moves)
              + lead density and rides[t]                         (the lead over that band)

Everything but the inconsistency is a function of the stems and their names, so the same
multitrack always gets the same mix; with ``inconsistency=0`` the engineer is its own rule,
the bound a perfect listener could reach (``bound`` baseline). Gains are in dB relative to
the raw stems, constant within each chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mixing_env.engineer import rules
from mixing_env.engineer.analysis import StemAnalysis, analyse_stems
from mixing_env.engineer.styles import DEFAULT_STYLE, Style, get_style
from mixing_env.errors import ConfigError

__all__ = ["DEFAULT_INCONSISTENCY_DB", "Engineer", "EngineerMix"]

DEFAULT_INCONSISTENCY_DB = 1.0
"""The engineer's random part: standard deviation of a per-stem level offset, dB."""


@dataclass
class EngineerMix:
    """What the engineer decided for one song.

    Attributes:
        gains_db: Fader gain of each stem per chunk, dB [shape=(n, T)].
        roles: Each stem's role.
        decisions: Per rule, what it did (JSON-ready: per stem lists and the lead's numbers).
        analysis: What the engineer heard (reused by whoever measures the same stems).
    """

    gains_db: np.ndarray
    roles: list[str]
    decisions: dict = field(default_factory=dict)
    analysis: StemAnalysis | None = None

    @property
    def gains(self) -> np.ndarray:
        """Linear gains [shape=(n, T)]."""
        return 10.0 ** (self.gains_db / 20.0)

    def render(self, stems: np.ndarray, *, chunk_size: int,
               peak_db: float = -1.0) -> tuple[np.ndarray, float]:
        """The mix: every stem times its gain of each chunk, summed, peaking at ``peak_db``.

        Args:
            stems: The mixed stems [shape=(n, n_samples)].
            chunk_size: Samples per chunk the gains hold for.
            peak_db: The mix's sample peak, dBFS.

        Returns:
            ``(mix float32 [shape=(n_samples,)], scale)``: the scale the gains were multiplied
            by (``gains * scale`` make the mix).
        """
        gains = self.gains
        n, length = np.shape(stems)
        T = gains.shape[1]
        padded = np.zeros((n, T * chunk_size), dtype=np.float64)
        padded[:, :length] = stems
        mix = np.einsum("it,itk->tk", gains, padded.reshape(n, T, chunk_size)).ravel()[:length]
        scale = 10 ** (peak_db / 20) / max(float(np.max(np.abs(mix))), 1e-12)
        return (mix * scale).astype(np.float32), scale


class Engineer:
    """A consistent mixing engineer of one style.

    Args:
        style: A :class:`Style` or the name of one of :data:`~mixing_env.engineer.STYLES`.
        inconsistency: Standard deviation (dB) of the per-stem random offset; 0 makes the
            engineer perfectly consistent.

    Raises:
        ConfigError: Unknown style, or an inconsistency that is not a finite number >= 0.
    """

    def __init__(self, style: Style | str = DEFAULT_STYLE,
                 inconsistency: float = DEFAULT_INCONSISTENCY_DB):
        self.style = get_style(style) if isinstance(style, str) else style
        if (isinstance(inconsistency, bool) or not isinstance(inconsistency, int | float)
                or not math.isfinite(inconsistency) or inconsistency < 0):
            raise ConfigError(f"inconsistency must be a finite number of dB >= 0, "
                              f"got {inconsistency!r}")
        self.inconsistency = float(inconsistency)

    def mix(self, stems: np.ndarray, roles: list[str], *, sample_rate: int, chunk_size: int,
            rng: np.random.Generator | None = None) -> EngineerMix:
        """Decide every stem's gain per chunk.

        Args:
            stems: Raw mono stems [shape=(n, n_samples)] at ``sample_rate``.
            roles: Each stem's role (:func:`~mixing_env.engineer.roles.roles_of`).
            sample_rate: Hz.
            chunk_size: Samples per chunk the gains hold for.
            rng: Draws the inconsistency; needed when ``inconsistency > 0``.

        Returns:
            The :class:`EngineerMix`.
        """
        if len(roles) != np.shape(stems)[0]:
            raise ConfigError(f"{len(roles)} roles for {np.shape(stems)[0]} stems")
        analysis = analyse_stems(stems, sample_rate=sample_rate, chunk_size=chunk_size)
        return self.mix_analysed(analysis, roles, rng=rng)

    def mix_analysed(self, a: StemAnalysis, roles: list[str],
                     rng: np.random.Generator | None = None) -> EngineerMix:
        """:meth:`mix` from a ready :class:`StemAnalysis`."""
        style, n = self.style, len(roles)
        steps: dict[str, np.ndarray] = {}

        def apply(name: str, change: np.ndarray) -> None:
            steps[name] = change
            g[:] += change

        g = np.zeros(n)
        apply("equal_loudness", rules.equal_loudness(a, roles, style))
        apply("brightness", rules.brightness(a, roles, style))
        apply("bus_balance", rules.bus_balance(a, roles, style, g))
        apply("kick_against_bass", rules.kick_against_bass(a, roles, style, g))
        apply("unmask", rules.unmask(a, roles, style, g))
        apply("carve_for_lead", rules.carve_for_lead(a, roles, style))
        apply("tonal_balance", rules.tonal_balance(a, roles, style, g))
        dynamic = rules.section_density(a, roles, style, g) + rules.duck_under_lead(a, roles,
                                                                                     style)
        lead_static, lead_moves, lead_decisions = rules.lead_placement(a, roles, style, g,
                                                                       dynamic)
        lead = np.zeros(n)
        if "lead" in roles:
            lead[roles.index("lead")] = lead_static
            dynamic[roles.index("lead")] += lead_moves
        apply("lead_placement", lead)
        if self.inconsistency > 0:
            if rng is None:
                raise ConfigError("an engineer with inconsistency > 0 needs an rng")
            apply("inconsistency", rng.normal(0.0, self.inconsistency, n))
        silent = ~np.isfinite(a.loudness)
        g[silent] = 0.0  # a silent stem adds nothing whatever its fader
        decisions = {name: [round(float(x), 3) for x in change]
                     for name, change in steps.items()}
        decisions["lead"] = {k: round(float(v), 4) for k, v in lead_decisions.items()}
        return EngineerMix(gains_db=g[:, None] + dynamic, roles=list(roles),
                           decisions=decisions, analysis=a)
