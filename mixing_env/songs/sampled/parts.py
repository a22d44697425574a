"""The band: which parts a sampled song can have, their General MIDI sounds and their roles.

A *part* is one stem of a song: its Cambridge-MT-style file name (``01_Kick.wav``), its
mixing *role* (what the mixing model balances it as), the General MIDI program(s) it may be
played with, and the sections it usually plays in. Which parts a song gets is drawn per song:
the kick, snare, bass and one lead always play; the rest are drawn with the weights below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PARTS", "Part", "LEADS", "choose_parts", "ROLES"]

ROLES = (
    "kick",
    "snare",
    "hihat",
    "toms",
    "overheads",
    "bass",
    "guitar",
    "keys",
    "pad",
    "strings",
    "brass",
    "lead",
    "backing",
)
"""Mixing roles, in the order the mixing model's tables list them."""


@dataclass(frozen=True)
class Part:
    """One stem a song can have.

    Attributes:
        name: File name without number and ending, e.g. ``"ElecGtr2"``.
        role: Mixing role (one of :data:`ROLES`).
        style: Which pattern the arrangement plays (``"kick"``, ``"strum"``, ``"melody"``...).
        programs: General MIDI programs (0-based) to draw from; empty for drum-kit parts.
        sections: Sections the part usually plays in.
        weight: Chance of being drawn into a song (1 = always).
        slot: The taxonomy slot the name must land in (``None``: no rule of the taxonomy
            names this family; see ``tests/data/test_sampled_songs.py``).
    """

    name: str
    role: str
    style: str
    programs: tuple[int, ...]
    sections: frozenset
    weight: float
    slot: str | None

    @property
    def drum(self) -> bool:
        """Whether it is played on the General MIDI drum channel."""
        return not self.programs


def _s(*names: str) -> frozenset:
    return frozenset(names)


_GROOVE = _s("verse", "chorus", "bridge", "outro")

PARTS: tuple[Part, ...] = (
    Part("Kick", "kick", "kick", (), _GROOVE, 1.0, "Drums/Kick"),
    Part("Snare", "snare", "snare", (), _GROOVE, 1.0, "Drums/Snare"),
    Part("HiHat", "hihat", "hihat", (), _s("intro", "verse", "chorus", "bridge"), 0.9,
         "Drums/Hi-Hat"),
    Part("Toms", "toms", "toms", (), _GROOVE, 0.45, "Drums/Tom"),
    Part("Overheads", "overheads", "overheads", (), _GROOVE, 0.8, "Drums/Overheads"),
    Part("Bass", "bass", "bass", (33, 34, 38), _GROOVE, 1.0, "Strings/Bass"),
    Part("ElecGtr1", "guitar", "powerchord", (29, 30), _s("chorus", "bridge"), 0.6,
         "Strings/Electric"),
    Part("ElecGtr2", "guitar", "arpeggio", (26, 27, 28), _s("intro", "verse", "chorus"), 0.5,
         "Strings/Electric"),
    Part("AcGtr", "guitar", "strum", (24, 25), _s("intro", "verse", "outro"), 0.35,
         "Strings/Acoustic"),
    Part("Piano", "keys", "comp", (0, 1), _s("intro", "verse", "bridge", "outro"), 0.6,
         "Keys/Piano"),
    Part("ElecPiano", "keys", "offbeat", (4, 5), _s("verse", "bridge"), 0.3, "Keys/Piano"),
    Part("Organ", "keys", "sustain", (16, 17, 18), _s("chorus", "bridge"), 0.3, "Keys/Organ"),
    Part("SynthPad", "pad", "sustain", (88, 89, 90), _s("intro", "chorus", "bridge", "outro"),
         0.35, "Keys/Synth"),
    Part("SynthArp", "keys", "arpeggio", (81, 87), _s("intro", "chorus", "bridge"), 0.25,
         "Keys/Synth"),
    Part("Strings", "strings", "sustain_high", (48, 49), _s("chorus", "bridge", "outro"), 0.4,
         "Strings/Orchestral"),
    Part("Brass", "brass", "stabs", (61, 62), _s("chorus", "bridge"), 0.3, "Brass/Brass"),
    Part("BackingVox1", "backing", "harmony_third", (52, 53), _s("chorus",), 0.6,
         "Vocals/Backing"),
    Part("BackingVox2", "backing", "harmony_fifth", (52, 53), _s("chorus",), 0.3,
         "Vocals/Backing"),
)
"""Every accompanying part, in file-number order (the lead is numbered after the brass)."""

LEADS: tuple[Part, ...] = (
    Part("LeadVox", "lead", "melody", (53, 54), _s("verse", "chorus", "bridge"), 0.8,
         "Vocals/Lead"),
    Part("Sax", "lead", "melody", (64, 65, 66), _s("intro", "verse", "chorus", "bridge"), 0.08,
         "Woodwind/Woodwind"),
    Part("Flute", "lead", "melody", (73,), _s("intro", "verse", "chorus", "bridge"), 0.06,
         "Flute/Flute"),
    Part("SynthLead", "lead", "melody", (80, 81), _s("intro", "verse", "chorus", "bridge"), 0.06,
         "Keys/Synth"),
)
"""The one lead each song has: a voice most of the time, else an instrument."""

_ORDER = (
    [p.name for p in PARTS if p.role != "backing"]
    + [p.name for p in LEADS]
    + [p.name for p in PARTS if p.role == "backing"]
)
_BY_NAME = {p.name: p for p in PARTS}


def choose_parts(rng: np.random.Generator, n_parts: int) -> list[Part]:
    """Draw a song's band: kick, snare, bass, one lead, and ``n_parts - 4`` more by weight.

    Args:
        rng: The song's generator.
        n_parts: Stems in the song, 4..(len(PARTS) + 1).

    Returns:
        Parts in file-number order (drums, bass, guitars, keys, strings, brass, lead,
        backing voices).
    """
    lead_w = np.array([p.weight for p in LEADS])
    lead = LEADS[int(rng.choice(len(LEADS), p=lead_w / lead_w.sum()))]
    always = [p for p in PARTS if p.weight >= 1.0]
    pool = [p for p in PARTS if p.weight < 1.0]
    w = np.array([p.weight for p in pool])
    extra_n = min(max(n_parts - len(always) - 1, 0), len(pool))
    picked = rng.choice(len(pool), size=extra_n, replace=False, p=w / w.sum())
    chosen = always + [lead] + [pool[int(i)] for i in picked]
    names = {p.name for p in chosen}
    if "BackingVox2" in names and "BackingVox1" not in names:  # one voice is always "1"
        chosen = [p if p.name != "BackingVox2" else _BY_NAME["BackingVox1"] for p in chosen]
    return sorted(chosen, key=lambda p: _ORDER.index(p.name))
