"""RLlib algorithms that train the DeepMixing policy: PPO, APPO, IMPALA, vanilla PG, BC, MARWIL.

``build_algorithm_config`` turns an experiment's plain dicts into an AlgorithmConfig on the
new API stack; :mod:`rl_models.algorithms.pg` adds the vanilla policy gradient that RLlib 2.60
no longer ships.
"""

from rl_models.algorithms.builder import (
    ALGORITHMS,
    DEFAULT_MODULE,
    DEFAULTS,
    RLLIB_DEFAULT_MODULE,
    build_algorithm_config,
)
from rl_models.algorithms.pg import PG, PGConfig

__all__ = [
    "ALGORITHMS",
    "DEFAULT_MODULE",
    "DEFAULTS",
    "RLLIB_DEFAULT_MODULE",
    "PG",
    "PGConfig",
    "build_algorithm_config",
]
