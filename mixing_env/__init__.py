"""DeepMixing environment package: data, audio features, the Gymnasium env, baselines.

Importing it registers the Gymnasium id ``"DeepMixing-v0"``; :func:`register_with_ray`
registers ``"deepmixing"`` with Ray Tune.
"""

from mixing_env.envs import ENV_ID, RAY_ENV_NAME, register_with_ray

__all__ = ["ENV_ID", "RAY_ENV_NAME", "register_with_ray"]
