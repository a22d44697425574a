"""What each stem is to the engineer: its role and its bus, read from the stem's name.

The engineer sees stems it did not make, so roles come from the names through the project's
taxonomy (the same rules ``prepare`` uses to fill slots): ``07_ElecGtr2.wav`` is
``Strings/Electric``, a guitar on the band bus. One stem is the lead: the lead vocal, else a
stem named lead or solo, else the first woodwind or flute when nothing is sung.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mixing_env.data.taxonomy import Taxonomy, normalize_stem_name, parse_slot

__all__ = ["BUSES", "ROLES", "ROLE_BUS", "roles_of", "role_of_instrument", "slot_roles"]

ROLES = ("kick", "snare", "hihat", "toms", "overheads", "kit", "bass", "guitar", "keys",
         "pad", "strings", "brass", "lead", "backing")
"""The engineer's roles."""

ROLE_BUS = {
    "kick": "drums", "snare": "drums", "hihat": "drums", "toms": "drums",
    "overheads": "drums", "kit": "drums", "bass": "bass", "guitar": "band", "keys": "band",
    "pad": "band", "strings": "band", "brass": "band", "backing": "voices", "lead": "lead",
}
"""The bus (group fader) each role is balanced on."""

BUSES = ("drums", "bass", "band", "voices")
"""The accompaniment's buses, balanced against the drums; the lead sits on top of them."""

_INSTRUMENT_ROLE = {
    "Drums/Kick": "kick", "Drums/Bass": "kick", "Drums/Rim": "snare", "Drums/Snare": "snare",
    "Drums/Hi-Hat": "hihat", "Drums/Percussion": "hihat", "Drums/Overheads": "overheads",
    "Drums/Cymbal": "overheads", "Drums/Room": "overheads", "Drums/Ambience": "overheads",
    "Drums/Tom": "toms", "Drums/Drums": "kit", "Drums/Extra": "overheads",
    "Strings/Bass": "bass", "Strings/Orchestral": "strings",
    "Vocals/Lead": "lead", "Vocals/Backing": "backing", "Vocals/Extra": "backing",
    "Woodwind/Woodwind": "brass", "Brass/Brass": "brass", "Flute/Flute": "brass",
}
_SECTION_ROLE = {"Drums": "overheads", "Strings": "guitar", "Keys": "keys", "Vocals": "backing"}
_SOLO_WINDS = ("Woodwind/Woodwind", "Flute/Flute")


def role_of_instrument(section: str, instrument: str, name: str = "") -> str:
    """The role of a taxonomy instrument (``name`` refines keys: a pad, a synth lead).

    Anything the taxonomy cannot place (Overall, Extra) is balanced like keys.
    """
    key = f"{section}/{instrument}"
    if key in _INSTRUMENT_ROLE:
        return _INSTRUMENT_ROLE[key]
    words = normalize_stem_name(name).split()
    if section == "Keys" and "pad" in words:
        return "pad"
    return _SECTION_ROLE.get(section, "keys")


def roles_of(stem_names: Sequence[str], taxonomy: Taxonomy | None = None) -> list[str]:
    """Each stem's role, with exactly one lead where the song has one.

    Args:
        stem_names: File names or labels, e.g. ``["01_Kick.wav", "10_LeadVox.wav"]``.
        taxonomy: The name rules; None: the project's default.

    Returns:
        One role of :data:`ROLES` per stem.
    """
    taxonomy = taxonomy or Taxonomy.load()
    return _with_one_lead([taxonomy.classify(name) for name in stem_names], stem_names)


def slot_roles(slot_names: Sequence[str], stem_files: dict[str, str],
               taxonomy: Taxonomy | None = None) -> list[str]:
    """Roles of a prepared song's stems, in slot order.

    A stem's source file name decides, as for a folder (:func:`roles_of`); a slot whose file
    is not recorded is taken for its instrument (``"Vocals/Lead#1"`` is the lead).

    Args:
        slot_names: The stems' slots (real tracks only).
        stem_files: Slot name -> source file, as ``Song.stem_files``.
        taxonomy: The name rules; None: the project's default.
    """
    taxonomy = taxonomy or Taxonomy.load()
    names = [Path(stem_files[slot]).name if slot in stem_files else "" for slot in slot_names]
    instruments = [taxonomy.classify(name) if name else parse_slot(slot)[:2]
                   for slot, name in zip(slot_names, names, strict=True)]
    return _with_one_lead(instruments, names)


def _with_one_lead(instruments: Sequence[tuple[str, str]], names: Sequence[str]) -> list[str]:
    """Roles from (section, instrument) and names; the first lead stays, later ones double."""
    roles = [role_of_instrument(s, i, name) for (s, i), name in zip(instruments, names,
                                                                     strict=True)]
    leads = [k for k, r in enumerate(roles) if r == "lead"]
    if not leads:
        named = [k for k, name in enumerate(names)
                 if {"lead", "solo"} & set(normalize_stem_name(name).split())]
        sung = any(s == "Vocals" for s, _ in instruments)
        winds = [k for k, (s, i) in enumerate(instruments) if f"{s}/{i}" in _SOLO_WINDS]
        leads = named or ([] if sung else winds)
    for k in leads[1:]:  # a second lead vocal is balanced as a double, with the voices
        roles[k] = "backing"
    if leads:
        roles[leads[0]] = "lead"
    return roles
