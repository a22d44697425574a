"""The loopback cluster's port picking: a node's ports never overlap (Ray refuses them)."""

from __future__ import annotations

import socket

from tests.cluster import conftest as cluster_conftest
from tests.cluster.conftest import free_port_range, free_ports


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(8)
    assert len(set(ports)) == 8
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_free_port_range_avoids_the_given_ports():
    taken = set(free_ports(6))
    low = free_port_range(40, avoid=taken)
    assert taken.isdisjoint(range(low, low + 41))


def test_free_port_range_skips_a_range_with_a_bound_port(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        # The first candidate range holds the bound port; the next is a fresh free port.
        candidates = iter([busy - 5, *free_ports(1)])
        monkeypatch.setattr(cluster_conftest, "free_port", lambda: next(candidates))
        low = cluster_conftest.free_port_range(40, avoid=set())
        assert low != busy - 5
        assert busy not in range(low, low + 41)
