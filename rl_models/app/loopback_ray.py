"""A multi-node Ray cluster on one machine that listens on 127.0.0.1 only.

``ray start --node-ip-address=127.0.0.1`` is not enough: on Linux, Ray replaces a loopback
address with the machine's external one (``ray._private.services.resolve_ip_for_localhost``)
and its GCS, raylets and workers then listen on every interface. This wrapper runs Ray's own
CLI with that replacement turned off, so every server binds 127.0.0.1 (Ray's single-machine
mode does the same, but refuses a second node)::

    python -m rl_models.app.loopback_ray start --head --port=6390 --num-cpus=2 ...
    python -m rl_models.app.loopback_ray start --address=127.0.0.1:6390 --num-cpus=1 ...
    ss -ltnp | grep -E 'gcs_server|raylet|ray::'    # every line shows 127.0.0.1

A driver joins it with ``deepmixing train ... --address 127.0.0.1:6390``: ``init_ray`` sees
that only the loopback address answers and connects the same way (:func:`loopback_addresses`).
It is for trying a cluster recipe and for the tests; real clusters use ``ray start`` on each
machine (``docs/scaling_out.md``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

__all__ = ["LOOPBACK", "loopback_addresses", "main"]

LOOPBACK = "127.0.0.1"
"""The address every node, server and worker uses."""


@contextlib.contextmanager
def loopback_addresses() -> Iterator[None]:
    """Keeps Ray from replacing 127.0.0.1 with the machine's external address meanwhile."""
    from ray._private import services

    saved = services.resolve_ip_for_localhost, services.get_node_ip_address
    services.resolve_ip_for_localhost = (
        lambda host: LOOPBACK if services.is_localhost(host) else host)
    services.get_node_ip_address = lambda address=None: LOOPBACK
    try:
        yield
    finally:
        services.resolve_ip_for_localhost, services.get_node_ip_address = saved


def main(argv: list[str] | None = None) -> int:
    """Runs ``ray <argv>`` (``start``, ``status``, ...) with loopback addresses kept."""
    from ray.scripts.scripts import cli

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "start" and not any(a.startswith("--node-ip-address") for a in args):
        args.append(f"--node-ip-address={LOOPBACK}")
    with loopback_addresses():
        try:
            cli.main(args=args, prog_name="python -m rl_models.app.loopback_ray")
        except SystemExit as e:
            return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
