"""Typed, validated configuration of the attention-LSTM policy (report 4.1-4.2, Appendix 2)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from mixing_env.errors import ConfigError

__all__ = ["AttentionLSTMConfig", "DB_CENTER", "DB_SPREAD", "INPUT_NORMS", "LEGACY_KEYS",
           "RLLIB_INJECTED_KEYS"]

INPUT_NORMS = ("mu_law", "none", "layer_norm", "db")
"""Per-track chunk input normalizations: ``mu_law`` log-compresses raw samples in [-1, 1]
(``sign(x) log1p(mu |x|) / log1p(mu)``), ``none`` uses the features as given, ``layer_norm``
standardizes each chunk, ``db`` maps absolute dB features (the env's ``obs_features="logmel"``,
-100..0 dB) affinely to about [-2, 2] with :data:`DB_CENTER` and :data:`DB_SPREAD`, keeping the
level a mixing decision needs (``layer_norm`` would erase it)."""

DB_CENTER = -50.0
"""dB value ``input_norm="db"`` maps to 0."""

DB_SPREAD = 25.0
"""dB per unit after ``input_norm="db"``."""

RLLIB_INJECTED_KEYS = frozenset(
    {f.name for f in dataclasses.fields(DefaultModelConfig)} | {"vf_share_layers"}
)
"""Keys RLlib merges into every model_config (its DefaultModelConfig fields and the
algorithms' auto-included ``vf_share_layers``). They are accepted and ignored, except
``max_seq_len`` which this module uses."""

LEGACY_KEYS = {
    "window": "the policy attends over the whole song so far in O(1) per step "
              "(rl_models/modules/running_attention.py), there is no window any more",
}
"""Keys of earlier versions, accepted with a DeprecationWarning and ignored -> why."""


@dataclass(frozen=True)
class AttentionLSTMConfig:
    """Hyperparameters of `AttentionLSTMModule`; defaults are the report's Appendix 2."""

    embed_dim: int = 16
    """e: size of the per-track chunk embedding fed to the track LSTM."""

    hidden_size: int = 100
    """k: track representation h_is per position; k/2 per direction, so it must be even."""

    mix_hidden_size: int = 5
    """l: Uni-LSTM hidden size over the mix MFCC."""

    attention_dim: int = 100
    """r: rows of the parameter matrices H_i, F_i (r x k) and B1, B2 (r x l)."""

    max_seq_len: int = 32
    """Length of the training sequences RLlib cuts episodes into (BPTT length)."""

    share_encoder: bool = True
    """One chunk encoder, track LSTM and H, F for all tracks, told apart by ``slot_embedding``:
    a slot that training rarely saw acts as the others taught it. False: the report's
    per-track matrices (embedding, LSTM, H_i, F_i per track)."""

    slot_embedding: bool = True
    """Add a learned per-slot vector (size e) to each track's chunk embedding, so shared
    weights still know which slot (instrument) a track is."""

    cross_track_attention: bool = False
    """Before the track LSTMs, let every track's chunk embedding attend to the other real
    tracks' (one head of scaled dot-product attention, added as a residual): a track can then
    hear what the rest of the band plays (masking, which bus is crowded, the mix's tone).
    False: tracks meet only in the final softmax, as in the report."""

    input_norm: str = "mu_law"
    """Per-track chunk normalization, one of INPUT_NORMS."""

    mu: float = 255.0
    """Compression constant of ``input_norm="mu_law"``."""

    log_rms_feature: bool = True
    """Append log(mean(x^2) + 1e-8) / 10 of the (unnormalized) chunk to its features: the
    chunk's level, which a linear map of raw samples cannot extract."""

    mfcc_scale: float = 1.0
    """Factor applied to the observed mix MFCC before the Uni-LSTM."""

    concentration_scale: float = 10.0
    """kappa (initial value if learned): concentration = kappa * n_real * beta + floor, so the
    average real-slot concentration is kappa + floor. Larger = less exploration noise."""

    learn_concentration_scale: bool = True
    """Learn log(kappa) as a free parameter (clamped to [1e-2, 1e4]); else kappa is fixed."""

    concentration_floor: float = 0.05
    """floor > 0 added to every real slot's concentration."""

    level_prior: float | None = None
    """None: no prior. A number: initial weight w of the loudness prior added to the track
    attention's logits: ``gamma_i += w * (-ln(10) / 20) * level_i + bias_i``, level_i the dB feature
    ``level_prior_feature`` of track i's observation (clamped to [-60, 0] dB; a track not
    playing yet takes the mean of those playing). w = 1 and bias = 0 make the initial mean
    the loudness-equalised gains; learned per-slot biases ``bias_i`` and w can express the
    per-instrument balance. Needs a level in dB among the chunk features (the env's
    ``obs_features="logmel"`` with ``level_features``, ``stem_level_features`` or
    ``stem_loudness_feature``; with the last, ``level_prior_bias_db`` can start the policy
    exactly at the ``instrument_balance`` baseline, see ``level_prior_bias_db``)."""

    learn_level_prior: bool = True
    """Learn the prior's weight w and the per-slot biases (else both stay fixed)."""

    level_prior_feature: int = -1
    """Index into a chunk's features of the level in dB the prior reads (-1: the last, which
    is the stem's BS.1770 loudness with the env's ``stem_loudness_feature``,
    ``stem_active_mean_db`` with ``stem_level_features``, ``active_mean_db`` with
    ``level_features`` only)."""

    level_prior_bias_db: tuple[float, ...] | None = None
    """Initial per-slot biases of the level prior, in dB (one per slot, C values; None:
    zeros). Converted to log-gain units (times ln(10)/20), so with ``level_prior: 1`` and the
    stem's loudness as the prior's feature a track gets ``10 ** ((bias_db - LUFS) / 20)``
    before the softmax: with each slot's ``InstrumentBalance.level_db`` as its bias, the
    ``instrument_balance`` baseline's table placed in the slot layout (the softmax ignores a
    common offset). Needs ``level_prior``."""

    residual_gate: float | None = None
    """None: gamma is the attention's output (plus the prior). A number: the initial value of
    a learned scalar g multiplying the attention's gamma, ``gamma_i = g * attention_i +
    prior_i``: at g = 0 the policy's mean is exactly the prior's and training learns a
    correction of it."""

    value_hiddens: tuple[int, ...] = field(default=(64,))
    """Hidden layer sizes of the value head (tanh)."""

    value_detach: bool = False
    """Stop the value loss's gradient at the value head's input features."""

    @classmethod
    def from_dict(cls, model_config: dict[str, Any] | None) -> AttentionLSTMConfig:
        """Builds and validates the config from an RLlib ``model_config`` dict.

        Args:
            model_config: Keys are this class's fields; RLlib's own keys
                (RLLIB_INJECTED_KEYS) are ignored except ``max_seq_len``.

        Raises:
            ConfigError: On an unknown key or a value of the wrong type or range.
        """
        if model_config is None:
            model_config = {}
        if dataclasses.is_dataclass(model_config):
            model_config = dataclasses.asdict(model_config)
        if not isinstance(model_config, dict):
            raise ConfigError(f"model_config must be a dict, got {type(model_config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        legacy = sorted(set(model_config) & LEGACY_KEYS.keys())
        if legacy:
            warnings.warn(f"model_config key(s) {legacy} are ignored: "
                          f"{'; '.join(LEGACY_KEYS[k] for k in legacy)}",
                          DeprecationWarning, stacklevel=2)
        unknown = sorted(set(model_config) - names - RLLIB_INJECTED_KEYS - LEGACY_KEYS.keys())
        if unknown:
            raise ConfigError(
                f"unknown model_config key(s) {unknown} for deepmixing_attention_lstm; "
                f"known keys: {sorted(names)}"
            )
        kwargs = {k: v for k, v in model_config.items() if k in names}
        for name in ("value_hiddens", "level_prior_bias_db"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        """Raises ConfigError naming the first invalid value."""
        for name in (
            "embed_dim",
            "hidden_size",
            "mix_hidden_size",
            "attention_dim",
            "max_seq_len",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model_config[{name!r}] must be an int >= 1, got {value!r}")
        if self.hidden_size % 2:
            raise ConfigError(
                "model_config['hidden_size'] (k) must be even (k/2 per Bi-LSTM direction), "
                f"got {self.hidden_size}"
            )
        for name in (
            "share_encoder",
            "slot_embedding",
            "cross_track_attention",
            "learn_level_prior",
            "log_rms_feature",
            "learn_concentration_scale",
            "value_detach",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"model_config[{name!r}] must be a bool, got {getattr(self, name)!r}"
                )
        if self.level_prior is not None and (isinstance(self.level_prior, bool)
                                             or not isinstance(self.level_prior, int | float)):
            raise ConfigError(
                f"model_config['level_prior'] must be a number or null, got {self.level_prior!r}")
        if isinstance(self.level_prior_feature, bool) or not isinstance(
                self.level_prior_feature, int):
            raise ConfigError("model_config['level_prior_feature'] must be an int, "
                              f"got {self.level_prior_feature!r}")
        self._validate_prior_extras()
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(
                f"model_config['input_norm'] must be one of {INPUT_NORMS}, got {self.input_norm!r}"
            )
        for name in ("mu", "mfcc_scale", "concentration_scale", "concentration_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"model_config[{name!r}] must be a number > 0, got {value!r}")
        if not (1e-2 <= self.concentration_scale <= 1e4):
            raise ConfigError(
                "model_config['concentration_scale'] must lie in [0.01, 10000], "
                f"got {self.concentration_scale!r}"
            )
        if not isinstance(self.value_hiddens, tuple) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in self.value_hiddens
        ):
            raise ConfigError(
                "model_config['value_hiddens'] must be a list of ints >= 1, "
                f"got {self.value_hiddens!r}"
            )

    def _validate_prior_extras(self) -> None:
        """The level prior's initial biases and the residual gate (finite numbers)."""
        bias = self.level_prior_bias_db
        if bias is not None:
            if self.level_prior is None:
                raise ConfigError("model_config['level_prior_bias_db'] needs "
                                  "model_config['level_prior'] (a number), got null")
            if not isinstance(bias, tuple) or not bias or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in bias):
                raise ConfigError("model_config['level_prior_bias_db'] must be a non-empty "
                                  f"list of numbers (dB per slot), got {bias!r}")
            bad = [i for i, v in enumerate(bias) if not math.isfinite(v)]
            if bad:
                raise ConfigError(f"model_config['level_prior_bias_db'] must be finite, got "
                                  f"{bias[bad[0]]!r} at slot {bad[0]}")
        gate = self.residual_gate
        if gate is not None and (isinstance(gate, bool) or not isinstance(gate, int | float)
                                 or not math.isfinite(gate)):
            raise ConfigError(f"model_config['residual_gate'] must be a finite number or null, "
                              f"got {gate!r}")

    def to_dict(self) -> dict[str, Any]:
        """Returns a plain dict (lists, not tuples) usable as RLlib ``model_config``."""
        d = dataclasses.asdict(self)
        d["value_hiddens"] = list(self.value_hiddens)
        if self.level_prior_bias_db is not None:
            d["level_prior_bias_db"] = list(self.level_prior_bias_db)
        return d
