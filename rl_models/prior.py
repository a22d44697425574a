"""Start a policy at the ``instrument_balance`` baseline: its table as the module's level prior.

:class:`~mixing_env.baselines.InstrumentBalance` gives a stem in slot s with loudness L
(LUFS) the weight ``10 ** ((table[s] - L) / 20)``, then normalises over the real tracks. The
attention-LSTM's level prior adds ``w * (-ln10/20) * level_i + bias_i`` to the track logits
before the same softmax. With the stem's loudness as the prior's feature (the env's
``stem_loudness_feature``, the last chunk feature), ``w = 1``, ``bias_s = ln10/20 * table[s]``
and the attention gated by a residual gate at 0, the module's beta is exactly the baseline's
gains; the attention then learns only a correction (the dynamics: ducking, riding, sections).

Silent stems differ: the baseline gives them 0, the prior the mean level of the stems that
play (a silent stem adds nothing to the mix either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mixing_env.baselines import InstrumentBalance
from mixing_env.errors import ConfigError

__all__ = ["PRIOR_ENV_CONFIG", "balance_prior_model_config"]

PRIOR_ENV_CONFIG: dict[str, Any] = {"obs_features": "logmel", "stem_loudness_feature": True}
"""Env config keys the prior needs: the stem's BS.1770 loudness as the last chunk feature."""


def balance_prior_model_config(balance: InstrumentBalance, slot_names: Sequence[str], *,
                               residual_gate: float = 0.0) -> dict[str, Any]:
    """The ``model_config`` keys that start the attention-LSTM at an instrument balance.

    Args:
        balance: A fitted table (:func:`mixing_env.balance.fit_instrument_balance`).
        slot_names: The slot layout's names, in slot order (C of them; the table's fallbacks
            give slots it lacks their instrument's or section's level).
        residual_gate: Initial weight of the attention's correction (0: exactly the table).

    Returns:
        ``level_prior``, ``level_prior_feature``, ``level_prior_bias_db`` and
        ``residual_gate``; merge them into the module's model_config and use an env with
        :data:`PRIOR_ENV_CONFIG`.

    Raises:
        ConfigError: No slot names.
    """
    names = list(slot_names)
    if not names:
        raise ConfigError("balance_prior_model_config needs the slot layout's names, got none")
    levels = [balance.level_db(name) for name in names]
    # The softmax ignores a common offset: centring keeps the biases near 0.
    mean = sum(levels) / len(levels)
    return {
        "level_prior": 1.0,
        "level_prior_feature": -1,
        "level_prior_bias_db": [round(v - mean, 6) for v in levels],
        "residual_gate": float(residual_gate),
    }
