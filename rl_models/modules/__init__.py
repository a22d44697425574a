"""Building blocks of the attention-LSTM policy: config, grouped LSTMs, attention, the core."""

from rl_models.modules.config import AttentionLSTMConfig
from rl_models.modules.core import AttentionLSTMCore, masked_softmax
from rl_models.modules.grouped_lstm import GroupedLinear, GroupedLSTM, GroupedNewestBackwardStep
from rl_models.modules.running_attention import NO_MASS, running_attention

__all__ = [
    "AttentionLSTMConfig",
    "AttentionLSTMCore",
    "GroupedLSTM",
    "GroupedLinear",
    "GroupedNewestBackwardStep",
    "NO_MASS",
    "masked_softmax",
    "running_attention",
]
