"""The application layer: CLI, experiments, training and evaluation glue, mixing, plots.

It stands on the model and algorithms (``rl_models``: module, distribution, registry,
checkpoint format, algorithms) and on the environment (``mixing_env``); nothing below imports
from here.
"""
