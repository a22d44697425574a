"""The instrument taxonomy (report Appendix 1): stem names to instrument slots.

A *slot* is one row of the combined raw-track array. Slots are ordered section by section and
instrument by instrument as in the report, and numbered within an instrument:
``"Drums/Kick#1"``, ``"Drums/Kick#2"``, ``"Vocals/Lead#1"``. Which slots a dataset has is
its slot layout (:mod:`mixing_env.data.slots`): by default the fixed C = 72 layout shared by
every song; songs with fewer stems get dummy (all-zero) slots.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from mixing_env.errors import ConfigError

__all__ = [
    "DEFAULT_TAXONOMY_PATH",
    "EXTRA",
    "UNKNOWN",
    "Rule",
    "Taxonomy",
    "normalize_stem_name",
    "slot_name",
    "parse_slot",
]

DEFAULT_TAXONOMY_PATH = Path(__file__).with_name("taxonomy.yaml")
"""The shipped taxonomy file."""

EXTRA, UNKNOWN = "Extra", "Unknown"
"""The name of the global leftovers section (and of each section's overflow instrument), and
of the instrument that takes stem names no rule matches."""

_LEADING_NUMBER = re.compile(r"^\s*\d+\s*[-_. ]*\s*")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")
_AUDIO_ENDING = re.compile(r"\.(wav|flac|aiff?|mp3|ogg)$", re.IGNORECASE)


def normalize_stem_name(name: str) -> str:
    """Turn a stem file or label into the text the rules search.

    ``"07_ElecGtr2.wav"`` -> ``"elec gtr 2"``, ``"BVs"`` -> ``"bvs"``, ``"drum set"`` ->
    ``"drum set"``.
    """
    name = Path(name).name
    name = _AUDIO_ENDING.sub("", name)
    stripped = _LEADING_NUMBER.sub("", name)
    name = stripped or name  # a name that is only a number keeps it
    name = _CAMEL.sub(" ", name)
    return " ".join(_NON_ALNUM.sub(" ", name).lower().split())


def slot_name(section: str, instrument: str, index: int) -> str:
    """``("Drums", "Kick", 1)`` -> ``"Drums/Kick#1"`` (index counts from 1)."""
    return f"{section}/{instrument}#{index}"


def parse_slot(slot: str) -> tuple[str, str, int]:
    """``"Drums/Kick#1"`` -> ``("Drums", "Kick", 1)``.

    Raises:
        ConfigError: The text is not of the form ``Section/Instrument#n``.
    """
    m = re.fullmatch(r"([^/#]+)/([^/#]+)#(\d+)", slot)
    if not m:
        raise ConfigError(f"slot name {slot!r} is not of the form 'Section/Instrument#n'")
    return m.group(1), m.group(2), int(m.group(3))


@dataclass(frozen=True)
class Rule:
    """One name rule: a regex searched in the normalised stem name, and its target.

    Attributes:
        pattern: Compiled, case-insensitive regex.
        section: Target section.
        instrument: Target instrument within the section.
    """

    pattern: re.Pattern
    section: str
    instrument: str


def _parse_sections(raw, source: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"taxonomy {source}: 'sections' must be a non-empty list, got {raw!r}")
    out = []
    for entry in raw:
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ConfigError(f"taxonomy {source}: each section needs a 'name', got {entry!r}")
        name = str(entry["name"])
        instruments = entry.get("instruments") or [name]
        out.append((name, tuple(str(i) for i in instruments)))
    return tuple(out)


def _parse_rules(raw, source: str, sections) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"taxonomy {source}: 'rules' must be a list, got {type(raw).__name__}")
    known = {(s, i) for s, insts in sections for i in insts}
    rules = []
    for entry in raw:
        if not isinstance(entry, Mapping) or "match" not in entry or "slot" not in entry:
            raise ConfigError(
                f"taxonomy {source}: each rule needs 'match' and 'slot', got {entry!r}"
            )
        try:
            pattern = re.compile(str(entry["match"]), re.IGNORECASE)
        except re.error as e:
            raise ConfigError(f"taxonomy {source}: bad regex {entry['match']!r}: {e}") from e
        target = str(entry["slot"])
        section, _, instrument = target.partition("/")
        instrument = instrument or section
        if (section, instrument) not in known:
            raise ConfigError(
                f"taxonomy {source}: rule {entry['match']!r} targets {target!r}, which is not "
                f"a Section/Instrument of the taxonomy"
            )
        rules.append(Rule(pattern, section, instrument))
    return tuple(rules)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"taxonomy file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"taxonomy file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"taxonomy file {path} must hold a mapping, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Taxonomy:
    """Sections, instruments and name rules.

    Attributes:
        sections: ``((section, (instrument, ...)), ...)`` in slot order.
        rules: Tried in order; the first match wins.
        source: Where it was read from (for messages and the cache manifest).
    """

    sections: tuple[tuple[str, tuple[str, ...]], ...]
    rules: tuple[Rule, ...]
    source: str = "default"

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Taxonomy:
        """Load the shipped taxonomy, or a user file merged into it.

        A user file may hold ``sections`` (replacing the default list), ``rules`` (tried
        before the default rules) and ``mode``: ``merge`` (default) or ``replace`` (the
        user file is the whole taxonomy).

        Args:
            path: A YAML file, or None for the shipped one.

        Raises:
            ConfigError: The file is missing, not YAML, or a rule targets an unknown slot.
        """
        default = _default_taxonomy()
        if path is None:
            return default
        path = Path(path)
        data = _read_yaml(path)
        unknown = set(data) - {"mode", "sections", "rules"}
        if unknown:
            raise ConfigError(
                f"taxonomy file {path}: unknown keys {sorted(unknown)}; "
                "expected mode, sections, rules"
            )
        mode = data.get("mode", "merge")
        if mode not in ("merge", "replace"):
            raise ConfigError(
                f"taxonomy file {path}: mode must be 'merge' or 'replace', got {mode!r}"
            )
        if mode == "replace":
            sections = _parse_sections(data.get("sections"), str(path))
            return cls(sections, _parse_rules(data.get("rules"), str(path), sections), str(path))
        sections = (
            _parse_sections(data["sections"], str(path)) if "sections" in data else default.sections
        )
        user = _parse_rules(data.get("rules"), str(path), sections)
        known = {(s, i) for s, insts in sections for i in insts}
        kept = tuple(r for r in default.rules if (r.section, r.instrument) in known)
        return cls(sections, user + kept, str(path))

    @property
    def fingerprint(self) -> str:
        """A short hash of sections and rules: a cache made with other rules is redone."""
        text = json.dumps(
            [self.sections, [(r.pattern.pattern, r.section, r.instrument) for r in self.rules]]
        )
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    @property
    def instruments(self) -> list[tuple[str, str]]:
        """Every (section, instrument) in slot order."""
        return [(s, i) for s, insts in self.sections for i in insts]

    @property
    def fallback(self) -> tuple[str, str]:
        """Where unmatched names go.

        ``Extra/Unknown``, else the global Extra section's first instrument, else the last
        instrument.
        """
        for s, insts in self.sections:
            if s == EXTRA:
                return s, UNKNOWN if UNKNOWN in insts else insts[0]
        s, insts = self.sections[-1]
        return s, insts[-1]

    def overflow(self, section: str) -> tuple[str, str] | None:
        """Where a stem goes when its instrument's slots are full.

        The section's own ``Extra`` instrument, else the global ``Extra/Extra``; None when the
        taxonomy has neither.
        """
        instruments = dict(self.sections)
        if EXTRA in instruments.get(section, ()):
            return section, EXTRA
        if EXTRA in instruments.get(EXTRA, ()):
            return EXTRA, EXTRA
        return None

    def match(self, stem_name: str) -> tuple[str, str] | None:
        """The (section, instrument) of the first rule that matches, or None."""
        text = normalize_stem_name(stem_name)
        for rule in self.rules:
            if rule.pattern.search(text):
                return rule.section, rule.instrument
        return None

    def classify(self, stem_name: str) -> tuple[str, str]:
        """Map a stem name (file name or label) to its (section, instrument).

        Args:
            stem_name: e.g. ``"07_ElecGtr2.wav"``, ``"LeadVox"``, ``"vocals"``,
                ``"clean electric guitar"``.

        Returns:
            ``(section, instrument)``, e.g. ``("Strings", "Electric")``; names no rule
            matches give :attr:`fallback`.
        """
        return self.match(stem_name) or self.fallback

    def assign_slots(self, stem_names: Sequence[str]) -> list[str]:
        """Slot of each stem of one song, numbering repeats in the order given.

        ``["01_Kick", "02_KickOut", "11_LeadVox"]`` -> ``["Drums/Kick#1", "Drums/Kick#2",
        "Vocals/Lead#1"]``.
        """
        seen: Counter = Counter()
        out = []
        for name in stem_names:
            key = self.classify(name)
            seen[key] += 1
            out.append(slot_name(*key, seen[key]))
        return out

    def slot_layout(self, songs_slots: Iterable[Sequence[str]]) -> list[str]:
        """The dataset's slot list: per instrument, the most slots any song uses.

        Args:
            songs_slots: For each song, its stems' slot names (from :meth:`assign_slots`).

        Returns:
            Slot names in taxonomy order, ``#1..#max`` within an instrument.
        """
        most: Counter = Counter()
        for slots in songs_slots:
            for slot in slots:
                section, instrument, index = parse_slot(slot)
                most[(section, instrument)] = max(most[(section, instrument)], index)
        order = self.instruments
        unknown = set(most) - set(order)
        if unknown:
            raise ConfigError(f"slots {sorted(unknown)} are not in the taxonomy {self.source}")
        return [slot_name(s, i, k) for s, i in order for k in range(1, most[(s, i)] + 1)]


@lru_cache(maxsize=1)
def _default_taxonomy() -> Taxonomy:
    data = _read_yaml(DEFAULT_TAXONOMY_PATH)
    sections = _parse_sections(data.get("sections"), str(DEFAULT_TAXONOMY_PATH))
    return Taxonomy(sections, _parse_rules(data.get("rules"), "default", sections), "default")
