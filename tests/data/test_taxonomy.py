import pytest

from mixing_env.data.taxonomy import Taxonomy, normalize_stem_name, parse_slot
from mixing_env.errors import ConfigError

# Realistic names from Cambridge-MT "Mixing Secrets" multitracks, MUSDB18 and MedleyDB labels.
CASES = [
    ("01_Kick.wav", "Drums", "Kick"),
    ("02_KickOut.wav", "Drums", "Kick"),
    ("Kik_In.wav", "Drums", "Kick"),
    ("03_SnareUp.wav", "Drums", "Snare"),
    ("04_SnareDown.wav", "Drums", "Snare"),
    ("05_HiHat.wav", "Drums", "Hi-Hat"),
    ("HH.wav", "Drums", "Hi-Hat"),
    ("04_Overheads.wav", "Drums", "Overheads"),
    ("09_OH_L.wav", "Drums", "Overheads"),
    ("06_Tom1.wav", "Drums", "Tom"),
    ("08_FloorTom.wav", "Drums", "Tom"),
    ("10_Room.wav", "Drums", "Room"),
    ("Rm_Mono.wav", "Drums", "Room"),
    ("11_Crash.wav", "Drums", "Cymbal"),
    ("12_Ride.wav", "Drums", "Cymbal"),
    ("13_Shaker.wav", "Drums", "Percussion"),
    ("Tambourine.wav", "Drums", "Percussion"),
    ("Rimshot.wav", "Drums", "Rim"),
    ("BassDrum.wav", "Drums", "Bass"),
    ("DrumLoop.wav", "Drums", "Drums"),
    ("14_Bass.wav", "Strings", "Bass"),
    ("15_BassDI.wav", "Strings", "Bass"),
    ("07_ElecGtr2.wav", "Strings", "Electric"),
    ("16_ElecGtr1DI.wav", "Strings", "Electric"),
    ("17_AcGtr.wav", "Strings", "Acoustic"),
    ("AcousticGtr_Mic.wav", "Strings", "Acoustic"),
    ("LeadGtr.wav", "Strings", "Electric"),
    ("Gtr.wav", "Strings", "Electric"),
    ("Ukulele.wav", "Strings", "Ukulele"),
    ("Violin.wav", "Strings", "Orchestral"),
    ("Banjo.wav", "Strings", "Extra"),
    ("18_Organ.wav", "Keys", "Organ"),
    ("Hammond.wav", "Keys", "Organ"),
    ("19_Piano.wav", "Keys", "Piano"),
    ("Pno.wav", "Keys", "Piano"),
    ("Keys.wav", "Keys", "Piano"),
    ("Rhodes.wav", "Keys", "Piano"),
    ("20_Synth.wav", "Keys", "Synth"),
    ("Syn.wav", "Keys", "Synth"),
    ("12_SynthPad.wav", "Keys", "Synth"),
    ("Pad.wav", "Keys", "Synth"),
    ("Harmonica.wav", "Keys", "Harmonica"),
    ("11_LeadVox.wav", "Vocals", "Lead"),
    ("LeadVoxDT.wav", "Vocals", "Lead"),
    ("Vox.wav", "Vocals", "Lead"),
    ("14_BackingVox1.wav", "Vocals", "Backing"),
    ("BVs.wav", "Vocals", "Backing"),
    ("BV2.wav", "Vocals", "Backing"),
    ("Sax.wav", "Woodwind", "Woodwind"),
    ("Clarinet.wav", "Woodwind", "Woodwind"),
    ("Flute.wav", "Flute", "Flute"),
    ("vocals", "Vocals", "Lead"),
    ("drums", "Drums", "Drums"),
    ("bass", "Strings", "Bass"),
    ("other", "Extra", "Extra"),
    ("clean electric guitar", "Strings", "Electric"),
    ("electric bass", "Strings", "Bass"),
    ("male singer", "Vocals", "Lead"),
    ("vocalists", "Vocals", "Backing"),
    ("drum set", "Drums", "Drums"),
    ("electric piano", "Keys", "Piano"),
    ("kick drum", "Drums", "Kick"),
    ("Trumpet.wav", "Brass", "Brass"),
    ("zzz_unknown.wav", "Extra", "Unknown"),
]


@pytest.mark.parametrize(("name", "section", "instrument"), CASES, ids=[c[0] for c in CASES])
def test_classify_realistic_names(name, section, instrument):
    assert Taxonomy.load().classify(name) == (section, instrument)


# One case list per family of name rules (issue 16): each name must reach its own instrument.
FAMILIES = {
    "brass": [
        ("Trumpet.wav", "Brass/Brass"),
        ("02_Trombone.wav", "Brass/Brass"),
        ("Horns.wav", "Brass/Brass"),
        ("FrenchHorn.wav", "Brass/Brass"),
        ("Tuba.wav", "Brass/Brass"),
        ("Tpt1.wav", "Brass/Brass"),
        ("AltoSax.wav", "Woodwind/Woodwind"),  # the horn section's sax is a woodwind
    ],
    "orchestral strings": [
        ("Violin1.wav", "Strings/Orchestral"),
        ("Viola.wav", "Strings/Orchestral"),
        ("Cello.wav", "Strings/Orchestral"),
        ("Contrabass.wav", "Strings/Orchestral"),
        ("Strings.wav", "Strings/Orchestral"),
        ("Str_Hi.wav", "Strings/Orchestral"),
        ("Vln2.wav", "Strings/Orchestral"),
        ("12_SteelString.wav", "Strings/Acoustic"),  # not a string section
    ],
    "percussion": [
        ("Shaker.wav", "Drums/Percussion"),
        ("Tambourine.wav", "Drums/Percussion"),
        ("Tamb.wav", "Drums/Percussion"),
        ("Congas.wav", "Drums/Percussion"),
        ("Bongo.wav", "Drums/Percussion"),
        ("Perc2.wav", "Drums/Percussion"),
    ],
    "synths": [
        ("Synth.wav", "Keys/Synth"),
        ("Pad.wav", "Keys/Synth"),
        ("LeadSynth.wav", "Keys/Synth"),
        ("SynthLead.wav", "Keys/Synth"),
        ("Arp.wav", "Keys/Synth"),
        ("Arpeggiator.wav", "Keys/Synth"),
    ],
    "fx": [
        ("FX.wav", "Extra/FX"),
        ("SFX_Riser.wav", "Extra/FX"),
        ("Effects.wav", "Extra/FX"),
        ("Whoosh.wav", "Extra/FX"),
    ],
    "abbreviations": [
        ("Kik.wav", "Drums/Kick"),
        ("Snr.wav", "Drums/Snare"),
        ("OH.wav", "Drums/Overheads"),
        ("Gtr.wav", "Strings/Electric"),
        ("EGtr.wav", "Strings/Electric"),
        ("AGtr.wav", "Strings/Acoustic"),
        ("Vox.wav", "Vocals/Lead"),
        ("BVox.wav", "Vocals/Backing"),
        ("BV.wav", "Vocals/Backing"),
        ("Pno.wav", "Keys/Piano"),
        ("Keys.wav", "Keys/Piano"),
        ("Org.wav", "Keys/Organ"),
        ("Rhodes.wav", "Keys/Piano"),
        ("Bs.wav", "Strings/Bass"),
    ],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_name_rule_families(family):
    tax = Taxonomy.load()
    got = {name: "/".join(tax.classify(name)) for name, _ in FAMILIES[family]}
    assert got == dict(FAMILIES[family])
    assert all(tax.match(name) is not None for name, _ in FAMILIES[family])


def test_unknown_name_has_no_rule_and_falls_back_to_extra_unknown():
    tax = Taxonomy.load()
    assert tax.match("zzz_unknown.wav") is None
    assert tax.classify("zzz_unknown.wav") == ("Extra", "Unknown")
    assert tax.overflow("Drums") == ("Drums", "Extra")
    assert tax.overflow("Brass") == ("Extra", "Extra")  # a section without its own Extra


def test_normalize():
    assert normalize_stem_name("07_ElecGtr2.wav") == "elec gtr 2"
    assert normalize_stem_name("11_LeadVox") == "lead vox"
    assert normalize_stem_name("BVs") == "bvs"


def test_sections_in_report_order():
    tax = Taxonomy.load()
    assert [s for s, _ in tax.sections] == [
        "Drums",
        "Strings",
        "Keys",
        "Vocals",
        "Woodwind",
        "Brass",
        "Flute",
        "Overall",
        "Extra",
    ]
    assert dict(tax.sections)["Drums"] == (
        "Kick",
        "Rim",
        "Hi-Hat",
        "Overheads",
        "Snare",
        "Cymbal",
        "Bass",
        "Drums",
        "Percussion",
        "Tom",
        "Room",
        "Ambience",
        "Extra",
    )
    assert dict(tax.sections)["Strings"] == (
        "Electric",
        "Ukulele",
        "Bass",
        "Acoustic",
        "Orchestral",
        "Extra",
    )
    assert dict(tax.sections)["Keys"] == ("Organ", "Piano", "Harmonica", "Synth", "Extra")
    assert dict(tax.sections)["Vocals"] == ("Lead", "Backing", "Extra")
    assert dict(tax.sections)["Extra"] == ("Extra", "FX", "Unknown")


def test_slots_numbered_and_layout_takes_max_per_instrument():
    tax = Taxonomy.load()
    a = tax.assign_slots(["01_Kick", "02_KickOut", "11_LeadVox"])
    b = tax.assign_slots(["01_Kick", "05_ElecGtr1", "06_ElecGtr2", "07_ElecGtr3"])
    assert a == ["Drums/Kick#1", "Drums/Kick#2", "Vocals/Lead#1"]
    assert tax.slot_layout([a, b]) == [
        "Drums/Kick#1",
        "Drums/Kick#2",
        "Strings/Electric#1",
        "Strings/Electric#2",
        "Strings/Electric#3",
        "Vocals/Lead#1",
    ]
    assert parse_slot("Drums/Hi-Hat#3") == ("Drums", "Hi-Hat", 3)
    with pytest.raises(ConfigError, match="Section/Instrument#n"):
        parse_slot("Kick1")


def test_user_rules_merge_first(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("rules:\n  - {match: 'gtr', slot: Strings/Acoustic}\n")
    tax = Taxonomy.load(user)
    assert tax.classify("07_ElecGtr2.wav") == ("Strings", "Acoustic")
    assert tax.classify("01_Kick.wav") == ("Drums", "Kick")  # defaults still apply


def test_user_taxonomy_replace(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text(
        "mode: replace\nsections:\n  - {name: Rhythm, instruments: [Drums, Bass]}\n"
        "  - {name: Other}\nrules:\n  - {match: 'kick|snare', slot: Rhythm/Drums}\n"
        "  - {match: bass, slot: Rhythm/Bass}\n"
    )
    tax = Taxonomy.load(user)
    assert tax.classify("01_Kick") == ("Rhythm", "Drums")
    assert tax.classify("02_Bass") == ("Rhythm", "Bass")
    assert tax.classify("11_LeadVox") == ("Other", "Other")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("rules:\n  - {match: 'x', slot: Drums/Cowbell}\n", r"Drums/Cowbell.*not a Section"),
        ("rules:\n  - {match: '(', slot: Drums/Kick}\n", r"bad regex"),
        ("rulez: []\n", r"unknown keys \['rulez'\]"),
        ("mode: mix\n", r"mode must be 'merge' or 'replace'"),
        ("[1, 2\n", r"not valid YAML"),
    ],
    ids=["unknown-slot", "bad-regex", "unknown-key", "bad-mode", "bad-yaml"],
)
def test_bad_user_taxonomy(tmp_path, text, match):
    user = tmp_path / "bad.yaml"
    user.write_text(text)
    with pytest.raises(ConfigError, match=match):
        Taxonomy.load(user)


def test_missing_user_taxonomy(tmp_path):
    with pytest.raises(ConfigError, match=r"not found: .*nope\.yaml"):
        Taxonomy.load(tmp_path / "nope.yaml")
