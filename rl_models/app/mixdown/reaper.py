"""A REAPER project (.rpp) that plays the agent's mix from the stems, written with ``rpp``.

What the project holds: one track per stem, its item pointing at the stem file (absolute
path), its pan, and its gain automation as the track's volume envelope (``VOLENV2``,
amplitude scaling: a point's value is the linear gain, 1.0 = 0 dB; linear shape, so REAPER
draws the same straight lines between points the mix used). The master volume is the mix's
make-up gain and the project's pan law is the mix's -3 dB constant-power law. So the project
plays ``makeup * sum_i pan_i(gain_i(t) * stem_i)``: the mix before its true-peak limiter.
The limiter is not in the project (a plug-in's state is not portable): the JSON says how
much it took off.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from rl_models.app.mixdown.automation import TrackAutomation

__all__ = ["master_gain_db", "read_volume_envelopes", "write_reaper_project"]

_SOURCE_KIND = {".flac": "FLAC"}  # REAPER reads WAV and AIFF through its WAVE source


def _number(x: float) -> str:
    return f"{x:.10g}"


def write_reaper_project(path: str | os.PathLike, tracks: Sequence[TrackAutomation], *,
                         lengths_s: Sequence[float], sample_rate: int, master_gain: float,
                         pan_law_db: float = -3.0103) -> Path:
    """Writes the project.

    Args:
        path: The .rpp to write.
        tracks: Each stem's automation (file, pan, points).
        lengths_s: Each stem file's length in seconds (its item's length).
        sample_rate: The project's sample rate, Hz.
        master_gain: Linear gain of the master track (the make-up gain).
        pan_law_db: Level of a centred mono track, dB (-3.01: constant power; 0: unity).

    Returns:
        The written path.
    """
    import rpp

    project = rpp.Element("REAPER_PROJECT", ["0.1", "6.0/deepmixing", "0"])
    project.extend([
        ["SAMPLERATE", str(sample_rate), "0", "0"],
        ["PANLAW", _number(10.0 ** (pan_law_db / 20.0))],
        ["PANMODE", "3"],  # stereo balance / mono pan: a mono item is panned by the law
        ["MASTER_VOLUME", _number(master_gain), "0", "-1", "-1", "1"],
    ])
    for track, length in zip(tracks, lengths_s, strict=True):
        envelope = rpp.Element("VOLENV2", [], [
            ["ACT", "1", "-1"], ["VIS", "1", "1", "1"], ["LANEHEIGHT", "0", "0"],
            ["ARM", "0"], ["DEFSHAPE", "0", "-1", "-1"],
            *(["PT", _number(t), _number(g), "0"] for t, g in zip(track.time_s, track.gain,
                                                                 strict=True)),
        ])
        source = rpp.Element("SOURCE", [_SOURCE_KIND.get(Path(track.file).suffix.lower(),
                                                         "WAVE")],
                             [["FILE", str(Path(track.file).resolve())]])
        item = rpp.Element("ITEM", [], [
            ["POSITION", "0"], ["LENGTH", _number(length)], ["LOOP", "0"],
            ["FADEIN", "0", "0", "0", "0", "0", "0", "0"],
            ["FADEOUT", "0", "0", "0", "0", "0", "0", "0"],
            ["NAME", Path(track.file).name], ["VOLPAN", "1", "0", "1", "-1"], ["SOFFS", "0"],
            source,
        ])
        project.append(rpp.Element("TRACK", [], [
            ["NAME", track.track],
            ["VOLPAN", "1", _number(track.pan), "-1", "-1", "1"],
            envelope, item,
        ]))
    path = Path(path)
    path.write_text(rpp.dumps(project))
    return path


def read_volume_envelopes(path: str | os.PathLike) -> dict[str, dict]:
    """A project's tracks as ``name -> {"file", "pan", "times", "gains"}`` (tests, tools).

    Raises:
        ValueError: The file is not a REAPER project.
    """
    import rpp

    project = rpp.loads(Path(path).read_text())
    if getattr(project, "tag", None) != "REAPER_PROJECT":
        raise ValueError(f"{path} is not a REAPER project")
    out = {}
    for track in project.findall("TRACK"):
        fields = {child[0]: child[1:] for child in track if isinstance(child, list)}
        points = [child for child in track.find("VOLENV2") if isinstance(child, list)
                  and child[0] == "PT"]
        source = track.find("ITEM").find("SOURCE")
        out[fields["NAME"][0]] = {
            "file": next(c[1] for c in source if isinstance(c, list) and c[0] == "FILE"),
            "pan": float(fields["VOLPAN"][1]),
            "times": [float(p[1]) for p in points],
            "gains": [float(p[2]) for p in points],
        }
    return out


def master_gain_db(path: str | os.PathLike) -> float:
    """The master track's volume of a project, dB."""
    import rpp

    project = rpp.loads(Path(path).read_text())
    volume = next(c for c in project if isinstance(c, list) and c[0] == "MASTER_VOLUME")
    return 20.0 * math.log10(float(volume[1]))
