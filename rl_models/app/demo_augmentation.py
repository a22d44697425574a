"""Augmented oracle demonstrations: what makes a cloned agent read the stems, not the slots.

Two transformations keep a demonstration exactly consistent, because the mix - and so the
reference match, the reward and the observed ``mix_mfcc`` - stays the same:

- **Recording level.** Scaling stem ``i`` by ``c`` scales the oracle's gain by ``1/c``; every
  feature of the ``logmel`` observation is in dB, so it moves by ``20 log10 c`` (silence stays
  at the -100 dB floor). Drawing ``c`` per stem teaches the agent to undo how hot each stem was
  recorded, whatever the training songs' recording levels were.
- **Slot.** Moving stems to other slots (the same permutation on observations, mask and
  actions) leaves the mix alone. Some episodes played this way make the agent decide from what
  a stem sounds like and how loud it is, and train every slot's weights, so a slot the
  training songs never fill (a second kick, a room mic) does not act at random.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixing_env.errors import ConfigError

__all__ = ["DB_FLOOR", "make_demo_augmentation"]

DB_FLOOR = -100.0
"""The observation's dB floor (silence): left where it is by the level shift."""

Augmentation = Callable[[dict[str, np.ndarray], np.ndarray, np.random.Generator],
                        tuple[dict[str, np.ndarray], np.ndarray]]


def make_demo_augmentation(*, level_sd_db: float = 6.0,
                           slot_shuffle: float = 0.3) -> Augmentation:
    """An augmentation of one demonstration sequence for behaviour cloning.

    Args:
        level_sd_db: Standard deviation of each stem's recording-level shift, dB (0: none).
        slot_shuffle: Chance that a sequence's slots are permuted (0: never).

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
            actions = actions * (10.0 ** (-shift / 20.0))[None, :]
            actions = actions / np.maximum(actions.sum(-1, keepdims=True), 1e-12)
        if slot_shuffle > 0 and rng.random() < slot_shuffle:
            order = rng.permutation(n_slots)
            chunks, mask, actions = chunks[:, order], mask[:, order], actions[:, order]
        return {**obs, "chunks": chunks.astype(np.float32), "track_mask": mask}, \
            actions.astype(np.float32)

    return augment
