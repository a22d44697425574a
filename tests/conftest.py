"""Fixtures shared by the whole test suite.

Add fixtures here additively; keep Ray small (2 CPUs, no dashboard) because the suite runs
on a 2-core machine.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every test that asks for it; shut down at the end.

    Yields the ``ray`` module. If Ray is already running (started by the caller), it is used
    and left running.
    """
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        started = True
    yield ray
    if started:
        ray.shutdown()
