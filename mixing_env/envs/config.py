"""Typed configuration of :class:`mixing_env.envs.mixing_env.MixingEnv`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mixing_env.constants import N_MFCC, RHO
from mixing_env.errors import ConfigError
from mixing_env.reward import LEVEL_MATCH_MODES, MFCC_SCALE, REWARD_MODES

__all__ = ["EnvConfig", "DEFAULT_SYNTHETIC", "OBS_FEATURES", "SONG_ROUTES", "over_songs"]

SONG_ROUTES = ("dataset_dir", "synthetic", "generated")
"""The keys that say where an env's songs come from; a config names at most one."""


def over_songs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``; naming songs of its own, it drops ``base``'s.

    An agent trained on one set of songs and scored on another keeps its observation
    settings but not its training songs: when ``override`` names a route of
    :data:`SONG_ROUTES`, ``base``'s other routes and its ``songs`` subset are dropped.
    """
    out = {**base, **override}
    if set(SONG_ROUTES) & set(override):
        for key in SONG_ROUTES:
            if key not in override:
                out.pop(key, None)
        if "songs" not in override:
            out.pop("songs", None)
    return out

OBS_FEATURES = ("raw", "logmel")

DEFAULT_SYNTHETIC: dict[str, Any] = {"n_songs": 4, "seconds": 2.0, "n_tracks": 4, "seed": 0}
"""Songs made in memory when neither ``dataset_dir`` nor ``synthetic`` is given."""


@dataclass(frozen=True)
class EnvConfig:
    """Everything that defines a :class:`MixingEnv`; built once from a dict at the edge."""

    dataset_dir: str | None = None
    """A prepared cache (``mixing_env.data.prepare``); None = synthetic songs in memory."""
    songs: tuple[str, ...] | None = None
    """Subset of songs by name; None = all."""
    synthetic: Mapping[str, Any] | None = None
    """Songs made in memory when ``dataset_dir`` is None: keyword arguments of
    ``mixing_env.songs.procedural.synthetic_songs``, or with ``kind: sampled`` of
    ``mixing_env.songs.sampled.sampled_songs`` (the songs ``synth`` writes: a held-out set
    for an experiment that trains on ``generated`` songs); None = :data:`DEFAULT_SYNTHETIC`."""
    generated: Mapping[str, Any] | None = None
    """Songs without end for training (:class:`~mixing_env.songs.stream.StreamConfig` keys:
    ``seed``, ``seconds``, ``n_tracks``, ``style``, ``inconsistency``, ``songs_per_skeleton``,
    ``episodes_per_song``, ``pool``, ``master_bus``), made as episodes ask for them; used when
    ``dataset_dir`` is None. Each env runner draws from its own stream."""
    episode_chunks: int | None = None
    """Length of a random window per episode, in chunks; None = the whole song."""
    obs_window: int = 1
    """W_obs: chunks per slot in the observation, the last W_obs up to and including t."""
    obs_features: str = "raw"
    """``"raw"``: samples (F = chunk_size); ``"logmel"``: absolute log-mel dB per track
    (F = n_track_features)."""
    n_track_features: int = 32
    """Mel bands of the ``"logmel"`` observation."""
    level_features: bool = False
    """Append each track's causal level statistics (chunk RMS, song peak so far, recent peak,
    mean level while playing; :func:`mixing_env.features.track_level_features`, 4 values in
    dB) to its ``"logmel"`` features, so a policy sees how loud each stem was recorded."""
    stem_level_features: bool = False
    """Append each stem's peak and mean level over the whole song
    (:func:`mixing_env.features.stem_level_features`, 2 values in dB, the same at every step)
    to its ``"logmel"`` features. Not causal: it is what an engineer mixing a finished
    multitrack knows from the start (the loudness baseline uses whole stems too)."""
    stem_spectrum_features: bool = False
    """Append each stem's long-term spectrum (its log-mel averaged over the chunks where it
    plays, :func:`mixing_env.features.stem_spectrum_features`, ``n_track_features`` values in
    dB, the same at every step) to its ``"logmel"`` features, before the loudness: a policy
    can compare the stems' spectra (which ones the band covers). Not causal."""
    stem_loudness_feature: bool = False
    """Append each stem's whole-song loudness (ITU-R BS.1770, LUFS,
    :func:`mixing_env.features.stem_loudness_feature`: the measure of the loudness and
    ``instrument_balance`` baselines; silent stems and dummy slots read -100) as the LAST
    ``"logmel"`` feature, the same at every step; a level prior reads it there
    (``level_prior_feature: -1``). Not causal, like ``stem_level_features``."""
    listening_features: bool = False
    """Append what an engineer listens to (:func:`mixing_env.engineer.listening.
    listening_features`, 12 values per track: loudness, tone, masking, bus, lead and the
    arrangement's density over time) to the ``"logmel"`` features, before the loudness. Not
    causal: whole-song measures, as an engineer mixing a finished multitrack has them."""
    n_mfcc: int = N_MFCC
    """MFCC coefficients of the reward and of ``mix_mfcc``."""
    rho: float = RHO
    """KL weight of the reward."""
    reward_mode: str = "normalized"
    """``"normalized"`` (distance / mfcc_scale) or ``"raw"`` (report's literal scale)."""
    mfcc_scale: float = MFCC_SCALE
    """Distance scale of the normalized reward, MFCC units."""
    level_match: str = "per_chunk"
    """``"per_chunk"``: mix scaled to the reference chunk's RMS before the MFCC; ``"none"``."""
    self_critical: bool = False
    """Also score a second action at every step, for a self-critical baseline: ``step`` then
    takes ``(2C,)``, the action played and a baseline action (the policy's mean), scores
    the baseline on the same chunk without playing it, and reports its reward as
    ``info["baseline_reward"]``; a ``(C,)`` action is played alone."""
    seed: int | None = None
    """Seed of the first reset when ``reset`` gets none (RLlib passes worker seeds itself)."""

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {name}={value!r}")

        positive_int("episode_chunks", self.episode_chunks, allow_none=True)
        positive_int("obs_window", self.obs_window)
        positive_int("n_track_features", self.n_track_features)
        positive_int("n_mfcc", self.n_mfcc)
        if self.obs_features not in OBS_FEATURES:
            raise ConfigError(
                f"obs_features must be one of {OBS_FEATURES}, got {self.obs_features!r}"
            )
        if not isinstance(self.self_critical, bool):
            raise ConfigError(f"self_critical must be a bool, got {self.self_critical!r}")
        for name in ("level_features", "stem_level_features", "stem_spectrum_features",
                     "listening_features", "stem_loudness_feature"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be a bool, got {value!r}")
            if value and self.obs_features != "logmel":
                raise ConfigError(
                    f"{name}=True needs obs_features='logmel', "
                    f"got obs_features={self.obs_features!r}"
                )
        if self.reward_mode not in REWARD_MODES:
            raise ConfigError(
                f"reward_mode must be one of {REWARD_MODES}, got {self.reward_mode!r}"
            )
        if self.level_match not in LEVEL_MATCH_MODES:
            raise ConfigError(
                f"level_match must be one of {LEVEL_MATCH_MODES}, got {self.level_match!r}"
            )
        if not (isinstance(self.rho, int | float) and self.rho >= 0):
            raise ConfigError(f"rho must be a non-negative number, got rho={self.rho!r}")
        if not (isinstance(self.mfcc_scale, int | float) and self.mfcc_scale > 0):
            raise ConfigError(
                f"mfcc_scale must be a positive number, got mfcc_scale={self.mfcc_scale!r}"
            )
        if self.songs is not None and (
            isinstance(self.songs, str) or not all(isinstance(s, str) for s in self.songs)
        ):
            raise ConfigError(f"songs must be a list of song names, got songs={self.songs!r}")
        if self.generated is not None:
            from mixing_env.songs.stream import StreamConfig

            if not isinstance(self.generated, Mapping):
                raise ConfigError(f"generated must be a dict of stream settings, got "
                                  f"{self.generated!r}")
            if self.dataset_dir is not None or self.synthetic is not None:
                raise ConfigError("generated cannot be combined with dataset_dir or synthetic")
            StreamConfig.from_dict(self.generated)  # names a bad key or value now
        if self.synthetic is not None and not isinstance(self.synthetic, Mapping):
            raise ConfigError(
                f"synthetic must be a dict of keyword arguments, got {self.synthetic!r}"
            )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | EnvConfig | None) -> EnvConfig:
        """Build from a plain dict (or RLlib's ``EnvContext``), rejecting unknown keys.

        RLlib's EnvContext is a dict subclass whose extra attributes (worker_index, ...) are
        not keys, so it converts like a dict.

        Raises:
            ConfigError: on an unknown key or a bad value.
        """
        if config is None:
            return cls()
        if isinstance(config, EnvConfig):
            return config
        if not isinstance(config, Mapping):
            raise ConfigError(f"env config must be a dict, got {type(config).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ConfigError(
                f"unknown env config key(s) {unknown}; expected a subset of {sorted(names)}"
            )
        values = dict(config)
        if values.get("songs") is not None and not isinstance(values["songs"], str):
            values["songs"] = tuple(values["songs"])
        for key in ("synthetic", "generated"):
            if values.get(key) is not None and isinstance(values[key], Mapping):
                values[key] = dict(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form (round-trips through :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["songs"] is not None:
            out["songs"] = list(out["songs"])
        for key in ("synthetic", "generated"):
            if out[key] is not None:
                out[key] = dict(out[key])
        return out
