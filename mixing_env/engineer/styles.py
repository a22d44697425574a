"""How an engineer of each style sets levels: the numbers behind the rules.

A style is a consistent engineer: the same audio always gets the same decisions. What differs
between styles is what an agent trained on one should carry and an agent trained on the other
should not. ``pop`` is vocal-forward (the lead well over a tidy band, strong rides, room carved
for the voice, a bright top); ``rock`` is band-forward (guitars and snare up, the voice sitting
in the band, few rides, a darker and flatter tone). The sources of each habit are in
docs/engineer.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mixing_env.errors import ConfigError

__all__ = ["DEFAULT_STYLE", "STYLES", "Style", "get_style"]


@dataclass(frozen=True)
class Style:
    """One engineer's habits (every level in dB or LU)."""

    name: str
    """The style's name (``deepmixing engineer --style NAME``)."""
    description: str
    """One line for people."""
    role_db: dict[str, float] = field(default_factory=dict)
    """Each role's loudness on its bus relative to equal loudness (the known exceptions)."""
    bus_db: dict[str, float] = field(default_factory=dict)
    """Each bus's loudness relative to the drum bus (``bass``, ``band``, ``voices``)."""
    brightness_db_per_octave: float = 0.0
    """A stem brighter than its role's typical one (spectral centroid, octaves) sits this
    much lower per octave: bright parts cut through and are heard louder than BS.1770 says."""
    kick_over_bass_db: float = 0.0
    """The kick's low end (below 150 Hz) over the bass's: who owns the bottom."""
    unmask_db: float = 0.0
    """Lift of a part per unit of its masking index above its role's typical index (how far
    the rest of the mix covers it, -1..1)."""
    carve_db: float = 0.0
    """Dip of a band or voices part per unit of its energy share in the lead's range above
    the reference share (:data:`~mixing_env.engineer.rules.CARVE_REFERENCE`)."""
    tonal_slope_db_per_octave: float = -4.5
    """The accompaniment's target long-term spectrum: this slope re 1 kHz."""
    tonal_weight: float = 0.0
    """How hard the buses are moved toward that spectrum (0: not at all; larger: less)."""
    lead_over_db: float = 3.0
    """The lead's loudness over the whole accompaniment while it plays."""
    lead_masking_db: float = 0.0
    """The lead goes up by this per unit of its masked energy share above the reference."""
    density_db_per_part: float = 0.0
    """The lead goes up by this per accompanying part playing above the reference count
    (dense passages need a louder lead), clipped to +-4 dB."""
    ride_strength: float = 0.0
    """Share of the lead's short-term distance from its wanted level that the fader takes out."""
    section_strength: float = 0.0
    """Share of a band or voices bus's short-term level swing (parts entering and leaving
    with the sections) that its fader takes out: a sparse passage's parts come up."""
    duck_db: float = 0.0
    """How far band and voices parts dip while the lead plays."""

    def __post_init__(self) -> None:
        from mixing_env.engineer.roles import BUSES, ROLES

        missing = sorted(set(ROLES) - set(self.role_db))
        if missing:
            raise ConfigError(f"style {self.name!r} has no role_db for {missing}")
        buses = sorted(set(BUSES) - {"drums"} - set(self.bus_db))
        if buses:
            raise ConfigError(f"style {self.name!r} has no bus_db for {buses}")
        for name in ("ride_strength", "section_strength"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"style {self.name!r}: {name} must be in [0, 1], got {value}")


POP = Style(
    name="pop",
    description="vocal-forward: the lead 4 LU over a tidy band, ridden, room carved for it",
    role_db={"kick": 0.0, "snare": -1.0, "hihat": -9.0, "toms": -5.0, "overheads": -8.0,
             "kit": 0.0, "bass": 0.0, "guitar": 0.0, "keys": 0.0, "pad": -4.0, "strings": -2.0,
             "brass": -1.0, "backing": 0.0, "lead": 0.0},
    bus_db={"bass": -2.0, "band": -4.0, "voices": -6.0},
    brightness_db_per_octave=5.0, kick_over_bass_db=3.0, unmask_db=8.0, carve_db=4.0,
    tonal_slope_db_per_octave=-4.5, tonal_weight=5.0,
    lead_over_db=4.0, lead_masking_db=20.0, density_db_per_part=1.5,
    ride_strength=0.8, section_strength=0.6, duck_db=3.0,
)
ROCK = Style(
    name="rock",
    description="band-forward: guitars and snare up, the voice 1 LU over the band, few rides",
    role_db={"kick": 1.0, "snare": 2.0, "hihat": -8.0, "toms": -3.0, "overheads": -4.0,
             "kit": 1.0, "bass": 0.0, "guitar": 2.0, "keys": -3.0, "pad": -6.0, "strings": -4.0,
             "brass": -2.0, "backing": 0.0, "lead": 0.0},
    bus_db={"bass": -2.0, "band": 1.0, "voices": -7.0},
    brightness_db_per_octave=3.0, kick_over_bass_db=0.0, unmask_db=6.0, carve_db=1.5,
    tonal_slope_db_per_octave=-3.0, tonal_weight=5.0,
    lead_over_db=1.0, lead_masking_db=12.0, density_db_per_part=1.0,
    ride_strength=0.5, section_strength=0.3, duck_db=1.0,
)
STYLES: dict[str, Style] = {s.name: s for s in (POP, ROCK)}
"""The engineers the project ships, by name."""
DEFAULT_STYLE = "pop"
"""The style of ``synth``, the demo, the learning benchmark and the pretrained agent."""


def get_style(name: str) -> Style:
    """The style called ``name``.

    Raises:
        ConfigError: No such style (the message lists the styles).
    """
    if name not in STYLES:
        raise ConfigError(f"unknown engineer style {name!r}; styles: {', '.join(STYLES)}")
    return STYLES[name]
