"""Building blocks of the attention-LSTM policy: config, grouped LSTMs, the core network."""

from rl_models.modules.config import AttentionLSTMConfig
from rl_models.modules.core import AttentionLSTMCore, masked_softmax
from rl_models.modules.grouped_lstm import GroupedBiLSTM, GroupedLinear

__all__ = [
    "AttentionLSTMConfig",
    "AttentionLSTMCore",
    "GroupedBiLSTM",
    "GroupedLinear",
    "masked_softmax",
]
