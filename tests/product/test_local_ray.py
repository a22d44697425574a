"""A local Ray started by ``deepmixing`` listens on loopback only and keeps token auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs in a fresh process: the test session's own Ray (ray_session) must not be the one checked.
PROBE = textwrap.dedent("""
    import json, os, ray
    from rl_models.app.train import init_ray
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    def descendants(root):
        parent = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = open(f"/proc/{d}/stat").read()
                    parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
                except OSError:
                    pass
        tree, grew = {root}, True
        while grew:
            new = {p for p, pp in parent.items() if pp in tree} - tree
            tree |= new
            grew = bool(new)
        return tree

    def listening(pids):
        inodes = set()
        for pid in pids:
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
            except OSError:
                pass
        out = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in open(table).read().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                    out.append(f[1])  # hex address:port
        return out

    init_ray(num_cpus=1)
    @ray.remote
    def where():
        return ray.util.get_node_ip_address()
    worker_ip = ray.get(where.remote())
    print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "worker_ip": worker_ip,
                      "listening": listening(descendants(os.getpid())),
                      "token_auth": is_token_auth_enabled()}))
    ray.shutdown()
""")

# /proc/net/tcp{,6} write addresses in hex, in host byte order per 32-bit word.
LOOPBACK = ("0100007F:", "0000000000000000FFFF00000100007F:", "00000000000000000000000001000000:")


def test_local_ray_listens_on_loopback_only():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=300, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["gcs"].startswith("127.0.0.1:"), seen
    assert seen["worker_ip"] == "127.0.0.1", seen
    assert seen["listening"], "no listening socket found: the probe saw nothing"
    outside = [a for a in seen["listening"] if not a.startswith(LOOPBACK)]
    assert not outside, f"Ray listens beyond loopback (hex address:port): {outside}"
    if os.environ.get("RAY_AUTH_MODE", "token") != "disabled":
        assert seen["token_auth"], "token authentication was turned off"
