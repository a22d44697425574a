"""An optional master bus: tone EQ, bus compression and reverb on the summed mix.

With it the reference is no longer a linear sum of the stems, as a real mastered mix is not,
so an agent cannot match it exactly: the truth gains still describe the balance before the
bus. Built from ``scipy`` filters and convolution (``pedalboard`` does the same but is
GPL-3.0, which this MIT project does not take on). Settings are drawn per song; see
``docs/mixing_model.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import oaconvolve, sosfilt

__all__ = ["MasterBus", "apply_master_bus", "draw_master_bus"]

_BLOCK = 64  # compressor detector resolution in samples (1.5 ms at 44.1 kHz)


@dataclass(frozen=True)
class MasterBus:
    """Settings of one song's master bus.

    Attributes:
        low_shelf_db: Gain of a 120 Hz low shelf (dB).
        high_shelf_db: Gain of an 8 kHz high shelf (dB).
        threshold_db: Compressor threshold relative to the mix's RMS level (dB).
        ratio: Compression ratio (2 = 2:1).
        attack_s: Detector attack time constant (s).
        release_s: Detector release time constant (s).
        reverb_rt60_s: Reverb decay time to -60 dB (s).
        reverb_wet_db: Reverb return level relative to the dry mix (dB).
        predelay_s: Reverb pre-delay (s).
    """

    low_shelf_db: float
    high_shelf_db: float
    threshold_db: float
    ratio: float
    attack_s: float
    release_s: float
    reverb_rt60_s: float
    reverb_wet_db: float
    predelay_s: float

    def as_dict(self) -> dict:
        """The settings as plain floats (for ``sampled.json``)."""
        return {k: float(v) for k, v in asdict(self).items()}


def draw_master_bus(rng: np.random.Generator) -> MasterBus:
    """Draw a plausible bus: gentle EQ, 2-4 dB of glue compression, a short room or plate."""
    return MasterBus(
        low_shelf_db=float(rng.uniform(-2.0, 3.0)),
        high_shelf_db=float(rng.uniform(-1.0, 3.0)),
        threshold_db=float(rng.uniform(-2.0, 4.0)),
        ratio=float(rng.uniform(2.0, 4.0)),
        attack_s=float(rng.uniform(0.005, 0.030)),
        release_s=float(rng.uniform(0.08, 0.30)),
        reverb_rt60_s=float(rng.uniform(0.6, 2.0)),
        reverb_wet_db=float(rng.uniform(-18.0, -10.0)),
        predelay_s=float(rng.uniform(0.005, 0.030)),
    )


def _shelf(gain_db: float, freq: float, sample_rate: int, *, high: bool) -> np.ndarray:
    """RBJ audio-EQ-cookbook shelf (slope 1) as one second-order section."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / 2 * np.sqrt(2)
    c, s2 = np.cos(w0), 2 * np.sqrt(a) * alpha
    sign = -1 if high else 1
    b0 = a * ((a + 1) - sign * (a - 1) * c + s2)
    b1 = 2 * sign * a * ((a - 1) - sign * (a + 1) * c)
    b2 = a * ((a + 1) - sign * (a - 1) * c - s2)
    a0 = (a + 1) + sign * (a - 1) * c + s2
    a1 = -2 * sign * ((a - 1) + sign * (a + 1) * c)
    a2 = (a + 1) + sign * (a - 1) * c - s2
    return np.array([[b0, b1, b2, a0, a1, a2]]) / a0


def _compress(y: np.ndarray, bus: MasterBus, sample_rate: int) -> np.ndarray:
    n_blocks = -(-y.size // _BLOCK)
    padded = np.zeros(n_blocks * _BLOCK)
    padded[: y.size] = y
    level = 10 * np.log10(np.maximum((padded.reshape(n_blocks, _BLOCK) ** 2).mean(1), 1e-20))
    rms_db = 10 * np.log10(max(float(np.mean(y**2)), 1e-20))
    over = np.maximum(level - (rms_db + bus.threshold_db), 0.0)
    wanted = -over * (1 - 1 / bus.ratio)
    dt = _BLOCK / sample_rate
    a_att, a_rel = np.exp(-dt / bus.attack_s), np.exp(-dt / bus.release_s)
    gain = np.empty(n_blocks)
    g = 0.0
    for k, w in enumerate(wanted):  # a gain that falls with the attack, recovers with release
        a = a_att if w < g else a_rel
        g = a * g + (1 - a) * w
        gain[k] = g
    centres = (np.arange(n_blocks) + 0.5) * _BLOCK
    per_sample = np.interp(np.arange(y.size), centres, gain)
    makeup = -float(np.median(gain))
    return y * 10 ** ((per_sample + makeup) / 20)


def _reverb(y: np.ndarray, bus: MasterBus, rng: np.random.Generator, sample_rate: int):
    length = int(bus.reverb_rt60_s * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * 10 ** (-3 * t / bus.reverb_rt60_s)
    lowpass = _shelf(-6.0, 4000.0, sample_rate, high=True)  # air absorbs the highs
    tail = sosfilt(lowpass, tail)
    ir = np.concatenate([np.zeros(int(bus.predelay_s * sample_rate)), tail])
    ir *= 10 ** (bus.reverb_wet_db / 20) / np.sqrt(np.sum(ir**2))
    return y + oaconvolve(y, ir)[: y.size]


def apply_master_bus(
    mix: np.ndarray, bus: MasterBus, *, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Run a mix through EQ, compressor and reverb.

    Args:
        mix: float [shape=(n,)] the summed mix.
        bus: Settings (from :func:`draw_master_bus`).
        rng: Draws the reverb's noise tail.
        sample_rate: Hz.

    Returns:
        float32 [shape=(n,)], the processed mix at the input's peak level.
    """
    y = np.asarray(mix, dtype=np.float64)
    y = sosfilt(_shelf(bus.low_shelf_db, 120.0, sample_rate, high=False), y)
    y = sosfilt(_shelf(bus.high_shelf_db, 8000.0, sample_rate, high=True), y)
    y = _compress(y, bus, sample_rate)
    y = _reverb(y, bus, rng, sample_rate)
    peak_in, peak_out = float(np.max(np.abs(mix))), float(np.max(np.abs(y)))
    return (y * (peak_in / max(peak_out, 1e-12))).astype(np.float32)
