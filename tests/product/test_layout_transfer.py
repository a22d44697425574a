"""Issue 16: a checkpoint trained on one dataset evaluates and mixes another with other instruments.

The ``trained`` checkpoint learnt on synthetic songs (3 stems each). The other dataset has a
trumpet, a violin, a second tom and a stem name no rule knows: both prepare into the default
C = 72 layout, so the checkpoint runs on it and every stem gets a slot.
"""

import json
import re

import numpy as np
import pytest
import soundfile as sf

SR = 44100
STEMS = {"01_Kick": 55, "02_Tom1": 150, "03_Tom2": 120, "04_Trumpet": 520, "05_Violin": 660,
         "06_Zzyzx": 770}


@pytest.fixture(scope="module")
def chamber(tmp_path_factory):
    root = tmp_path_factory.mktemp("other")
    song = root / "Chamber"
    song.mkdir()
    t = np.arange(SR) / SR
    for name, freq in STEMS.items():
        sf.write(song / f"{name}.wav", 0.3 * np.sin(2 * np.pi * freq * t), SR)
    mix = sum(0.1 * np.sin(2 * np.pi * f * t) for f in STEMS.values())
    sf.write(song / "Chamber_Mix.wav", mix, SR)
    return root


def test_checkpoint_evaluates_and_mixes_a_dataset_with_other_instruments(
        trained, product_cache, chamber, tmp_path, capsys, deepmixing):
    from mixing_env.data.cache import PreparedDataset

    cache = tmp_path / "cache"
    assert deepmixing("prepare", chamber, cache, "--no-progress") == 0
    assert "06_Zzyzx.wav: no name rule matches; placed in Extra/Unknown#1" in \
        capsys.readouterr().out
    assert PreparedDataset(cache).slot_names == PreparedDataset(product_cache).slot_names

    out = tmp_path / "eval"
    assert deepmixing("evaluate", trained, "equal", "--dataset", cache, "--out", out,
                      "--no-progress") == 0
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert {r["song"] for r in rows} == {"Chamber", "MEAN"}
    assert all(np.isfinite(r["mfcc_distance"]) for r in rows)

    capsys.readouterr()
    assert deepmixing("mix", trained, chamber / "Chamber", "--out", tmp_path / "mix",
                      "--no-progress") == 0
    assert re.search(r"deepmixing: warning: .*06_Zzyzx\.wav: no name rule matches",
                     capsys.readouterr().err)
    meta = json.loads((tmp_path / "mix" / "Chamber_automation.json").read_text())
    assert {t["track"]: t["slot"] for t in meta["tracks"]} == {
        "01_Kick": "Drums/Kick#1", "02_Tom1": "Drums/Tom#1", "03_Tom2": "Drums/Tom#2",
        "04_Trumpet": "Brass/Brass#1", "05_Violin": "Strings/Orchestral#1",
        "06_Zzyzx": "Extra/Unknown#1",
    }
    assert meta["unplaced_stems"] == []
