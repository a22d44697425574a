"""The agent that learns the engineer from songs without end: its module and what it observes.

The learning benchmark (:class:`benchmarks.quality.QualitySetup`) trains it and the shipped
pretrained agent (:mod:`rl_models.app.pretrained`) is made of it; both read these two
definitions, so the agent that ships is the one the benchmark measures.
"""

from __future__ import annotations

from typing import Any

__all__ = ["STREAM_AGENT_MODEL", "stream_agent_features"]

STREAM_AGENT_MODEL: dict[str, Any] = {
    "hidden_size": 48, "mix_hidden_size": 5, "attention_dim": 32, "embed_dim": 16,
    "max_seq_len": 32, "input_norm": "db", "log_rms_feature": False,
    "concentration_scale": 50.0, "cross_track_attention": True,
    # Equal loudness as the start: the logits add -loudness (the last feature); the
    # per-slot biases and the attention's correction are learnt.
    "level_prior": 1.0, "level_prior_feature": -1, "residual_gate": 1.0,
}
"""The reduced attention-LSTM (the report's l = 5; smaller k and r for 2 cores) with attention
across tracks, started at equal loudness. Copy it before changing it."""


def stream_agent_features(*, n_track_features: int = 16, listening: bool = True,
                          stem_spectrum: bool = False) -> dict[str, Any]:
    """The observation's env settings: log-mel, levels, loudness and what the engineer hears.

    Args:
        n_track_features: Log-mel bands per track.
        listening: Add the env's ``listening_features`` (what the engineer listens to).
        stem_spectrum: Add each stem's long-term log-mel spectrum (the env's
            ``stem_spectrum_features``: what the engineer's tonal balance reads).

    Returns:
        MixingEnv config keys; the stem's loudness is the last chunk feature, where the
        module's level prior reads it.
    """
    return {"obs_features": "logmel", "n_track_features": n_track_features,
            "level_features": True, "stem_level_features": True,
            "stem_spectrum_features": stem_spectrum, "listening_features": listening,
            "stem_loudness_feature": True}
