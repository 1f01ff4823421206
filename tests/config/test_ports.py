"""A start refuses a taken port, naming its key (gateway/ports.py), before anything binds."""

from __future__ import annotations

import socket

import pytest

from gateway.config import load_config
from gateway.ports import PortInUse, check_ports, listening_ports
from tests.peers.ports import free_port_block


def _config(**sets: object):
    base = free_port_block(span=40)
    values = {"control.port": base, "http.port": base + 1, "sip.port": base + 2,
              "sip.worker_base_port": base + 10, "sip.max_workers": 2, **sets}
    return load_config(None, {}, [f"{k}={v}" for k, v in values.items()])


@pytest.mark.parametrize("key, kind", [("control.port", socket.SOCK_STREAM), ("http.port", socket.SOCK_STREAM),
                                       ("sip.port", socket.SOCK_DGRAM),
                                       ("sip.worker_base_port", socket.SOCK_DGRAM)])
def test_a_taken_port_is_refused_with_its_key(key: str, kind: socket.SocketKind) -> None:
    cfg = _config()
    check_ports(cfg)  # all free
    port = next(p for p in listening_ports(cfg) if p.key == key)
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Kamailio and pjsua do
        holder.bind((port.host, port.port))
        if kind == socket.SOCK_STREAM:
            holder.listen()
        with pytest.raises(PortInUse) as err:
            check_ports(cfg)
    assert str(err.value).startswith(f"{key}: 127.0.0.1:{port.port}/")
    assert err.value.details["key"] == key


def test_ports_chosen_by_the_os_and_an_external_front_are_not_checked() -> None:
    keys = {p.key for p in listening_ports(_config(**{"control.port": 0, "http.port": 0, "sip.proxy": "external"}))}
    assert keys == {"sip.worker_base_port"}


def test_without_a_front_worker_0_binds_the_sip_port_and_the_others_theirs() -> None:
    cfg = _config(**{"sip.proxy": "none", "sip.max_workers": 3})
    sip = [(p.key, p.port) for p in listening_ports(cfg) if p.key.startswith("sip.")]
    assert sip == [("sip.port", cfg.sip.port), ("sip.worker_base_port", cfg.sip.worker_base_port + 10),
                   ("sip.worker_base_port", cfg.sip.worker_base_port + 20)]
