"""Augmented oracle demonstrations: what makes a cloned agent read the stems, not the slots.

Two transformations keep a demonstration exactly consistent, because the mix - and so the
reference match, the reward and the observed ``mix_mfcc`` - stays the same:

- **Recording level.** Scaling stem ``i`` by ``c`` scales the oracle's gain by ``1/c``; every
  feature of the ``logmel`` observation is in dB, so it moves by ``20 log10 c`` (silence stays
  at the -100 dB floor). Drawing ``c`` per stem teaches the agent to undo how hot each stem was
  recorded, whatever the training songs' recording levels were.
- **Prior rebase** (:func:`make_prior_rebase`, per episode). The oracle's gains keep their
  moves within the episode (ducking, riding, sections: each slot's log-gain minus its mean
  over the episode) but take their static balance from the module's level prior, so a
  module that starts at that prior learns only the moves, never our mixing model's
  per-instrument levels; the level augmentation then moves the gains by the prior's weight
  ``w`` times the level shift, as the prior itself does.
- **Slot.** Moving stems to other slots (the same permutation on observations, mask and
  actions) leaves the mix alone. Some episodes played this way make the agent decide from what
  a stem sounds like and how loud it is, and train every slot's weights, so a slot the
  training songs never fill (a second kick, a room mic) does not act at random.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixing_env.errors import ConfigError
from rl_models.modules.core import DB_TO_LOG_GAIN, PRIOR_NOBODY_PLAYS_DB, PRIOR_SILENT_DB

__all__ = ["DB_FLOOR", "make_demo_augmentation", "make_prior_rebase"]

DB_FLOOR = -100.0
"""The observation's dB floor (silence): left where it is by the level shift."""

Augmentation = Callable[[dict[str, np.ndarray], np.ndarray, np.random.Generator],
                        tuple[dict[str, np.ndarray], np.ndarray]]


_MIN_GAIN = 1e-6  # an oracle gain of 0 (a stem left out) counts as -120 dB


def make_prior_rebase(bias_db: list[float], weight: float, *, level_feature: int = -1
                      ) -> Callable[[dict[str, np.ndarray], np.ndarray],
                                    tuple[dict[str, np.ndarray], np.ndarray]]:
    """Demonstrations whose static balance is the level prior's, keeping the oracle's moves.

    Args:
        bias_db: The prior's level per slot, dB (``model_config["level_prior_bias_db"]``).
        weight: The prior's weight ``w`` on the stem's loudness (``model_config["level_prior"]``).
        level_feature: Index of the loudness feature in a chunk's features (the last).

    Returns:
        ``rebase(obs, actions) -> (obs, actions)`` for one whole episode: ``obs["chunks"]``
        [shape=(T, C, W, F)], ``obs["track_mask"]`` [shape=(T, C)], ``actions``
        [shape=(T, C)] on the simplex; the new actions are ``softmax(prior + log a - mean_t
        log a)`` over the real slots, prior ``= ln10/20 (bias_db - w * loudness)``.
    """
    bias = np.asarray(bias_db, dtype=np.float64) * DB_TO_LOG_GAIN

    def rebase(obs: dict[str, np.ndarray], actions: np.ndarray
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        # The level the module's prior reads (AttentionLSTMCore.level_prior), in numpy.
        level = np.clip(obs["chunks"][0, :, -1, level_feature], PRIOR_SILENT_DB, 0.0)
        real = obs["track_mask"][0] > 0
        playing = real & (level > PRIOR_SILENT_DB)  # as the module: others at the mean
        level = np.where(playing, level,
                         level[playing].mean() if playing.any() else PRIOR_NOBODY_PLAYS_DB)
        log_gain = np.log(np.maximum(actions.astype(np.float64), _MIN_GAIN))
        moves = log_gain - log_gain.mean(axis=0, keepdims=True)
        logits = bias - weight * DB_TO_LOG_GAIN * level + moves
        logits = np.where(real, logits, -np.inf)
        new = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return obs, (new / new.sum(axis=-1, keepdims=True)).astype(np.float32)

    return rebase


def make_demo_augmentation(*, level_sd_db: float = 6.0, slot_shuffle: float = 0.3,
                           gain_follows_level: float = 1.0) -> Augmentation:
    """An augmentation of one demonstration sequence for behaviour cloning.

    Args:
        level_sd_db: Standard deviation of each stem's recording-level shift, dB (0: none).
        slot_shuffle: Chance that a sequence's slots are permuted (0: never).
        gain_follows_level: The demonstrated gain moves by minus this times the level shift
            (1: the mix stays the same; ``w`` after :func:`make_prior_rebase`, whose static
            balance undoes only ``w`` of a stem's level).

    Returns:
        ``augment(obs, actions, rng) -> (obs, actions)`` for one sequence: ``obs["chunks"]``
        [shape=(L, C, W, F)] in dB, ``obs["track_mask"]`` [shape=(L, C)], ``actions``
        [shape=(L, C)] on the simplex.

    Raises:
        ConfigError: A negative spread or a chance outside [0, 1].
    """
    if not level_sd_db >= 0:
        raise ConfigError(f"level_sd_db must be >= 0, got {level_sd_db!r}")
    if not 0.0 <= slot_shuffle <= 1.0:
        raise ConfigError(f"slot_shuffle must be in [0, 1], got {slot_shuffle!r}")

    def augment(obs: dict[str, np.ndarray], actions: np.ndarray, rng: np.random.Generator
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        chunks, mask = obs["chunks"], obs["track_mask"]
        n_slots = actions.shape[-1]
        if level_sd_db > 0:
            shift = rng.normal(0.0, level_sd_db, n_slots).astype(np.float32)
            heard = chunks > DB_FLOOR + 1e-3
            chunks = np.where(heard, np.maximum(chunks + shift[None, :, None, None], DB_FLOOR),
                              chunks)
            actions = actions * (10.0 ** (-gain_follows_level * shift / 20.0))[None, :]
            actions = actions / np.maximum(actions.sum(-1, keepdims=True), 1e-12)
        if slot_shuffle > 0 and rng.random() < slot_shuffle:
            order = rng.permutation(n_slots)
            chunks, mask, actions = chunks[:, order], mask[:, order], actions[:, order]
        return {**obs, "chunks": chunks.astype(np.float32), "track_mask": mask}, \
            actions.astype(np.float32)

    return augment
