"""Constants that must agree across the data pipeline, the features, the env and the model.

The report's Appendix 2 fixes the chunk size (500 samples) and the MFCC size (13). The FFT
and mel settings are chosen so one 500-sample chunk gives exactly one MFCC frame with no
empty mel filter at 44.1 kHz.
"""

SAMPLE_RATE = 44100
"""Target sample rate in Hz (report 3.2)."""

CHUNK_SIZE = 500
"""Samples per chunk; one env step is one chunk (report Appendix 2)."""

N_MFCC = 13
"""MFCC coefficients per chunk (report Appendix 2)."""

RHO = 0.01
"""Weight of the KL smoothness penalty in the reward (report 4.3)."""

CACHE_FORMAT_VERSION = 1
"""Bumped whenever the on-disk cache layout changes; old caches are re-prepared."""
