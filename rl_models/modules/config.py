"""Typed, validated configuration of the attention-LSTM policy (report 4.1-4.2, Appendix 2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from mixing_env.errors import ConfigError

__all__ = ["AttentionLSTMConfig", "DB_CENTER", "DB_SPREAD", "INPUT_NORMS", "RLLIB_INJECTED_KEYS"]

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


@dataclass(frozen=True)
class AttentionLSTMConfig:
    """Hyperparameters of `AttentionLSTMModule`; defaults are the report's Appendix 2."""

    embed_dim: int = 16
    """e: size of the per-track chunk embedding fed to the Bi-LSTM (and kept in the state)."""

    hidden_size: int = 100
    """k: Bi-LSTM output size per position; k/2 per direction, so it must be even."""

    mix_hidden_size: int = 5
    """l: Uni-LSTM hidden size over the mix MFCC."""

    attention_dim: int = 100
    """r: rows of the parameter matrices H_i, F_i (r x k) and B1, B2 (r x l)."""

    window: int = 16
    """W: chunks per track the Bi-LSTM looks at (the last W up to t). W >= song length
    reproduces the report's "all chunks up to t"."""

    max_seq_len: int = 32
    """Length of the training sequences RLlib cuts episodes into (BPTT length)."""

    share_encoder: bool = False
    """One chunk embedding + Bi-LSTM for all tracks (H_i, F_i stay per track). Its Bi-LSTM runs
    on torch's fused LSTM kernel once the window is full: about 1.7x faster inference and 1.5x
    faster training at the report's size on CPU (``deepmixing benchmark model --share-encoder``)."""

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
        unknown = sorted(set(model_config) - names - RLLIB_INJECTED_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown model_config key(s) {unknown} for deepmixing_attention_lstm; "
                f"known keys: {sorted(names)}"
            )
        kwargs = {k: v for k, v in model_config.items() if k in names}
        if "value_hiddens" in kwargs and isinstance(kwargs["value_hiddens"], list):
            kwargs["value_hiddens"] = tuple(kwargs["value_hiddens"])
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
            "window",
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
            "log_rms_feature",
            "learn_concentration_scale",
            "value_detach",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"model_config[{name!r}] must be a bool, got {getattr(self, name)!r}"
                )
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

    def to_dict(self) -> dict[str, Any]:
        """Returns a plain dict (lists, not tuples) usable as RLlib ``model_config``."""
        d = dataclasses.asdict(self)
        d["value_hiddens"] = list(self.value_hiddens)
        return d
