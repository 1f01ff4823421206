"""gateway/memwatch.py: where memory grows (DISPATCH_GATEWAY_TRACEMALLOC), without a gateway."""

from __future__ import annotations

import collections
import os
import tracemalloc

import pytest

from gateway.memwatch import ENV, MemWatch, container_sizes, fd_kinds, grown, interval_from_env


class Service:  # an object of this project's modules: walked into
    __module__ = "gateway.services.fake"

    def __init__(self) -> None:
        self._live: dict[str, object] = {}
        self.pending: collections.deque[int] = collections.deque()


class Root:
    __module__ = "gateway.app_fake"

    def __init__(self) -> None:
        self.calls = Service()
        self.workers = {0: Service(), 1: Service()}
        self.name = "gw"


def test_off_unless_a_positive_number() -> None:
    assert interval_from_env({}) is None
    assert interval_from_env({ENV: ""}) is None
    assert interval_from_env({ENV: "0"}) is None
    assert interval_from_env({ENV: "soon"}) is None
    assert interval_from_env({ENV: " 60 "}) == 60.0


def test_container_sizes_by_path_through_own_objects() -> None:
    root = Root()
    root.calls._live.update({f"c{i}": object() for i in range(7)})
    root.workers[1].pending.extend(range(3))
    sizes = container_sizes({"gateway": root})
    assert sizes["gateway.calls._live"] == 7
    assert sizes["gateway.workers"] == 2
    assert sizes["gateway.workers[].pending"] == 3  # the largest of the workers' deques
    assert "gateway.name" not in sizes


def test_container_sizes_visit_each_object_once_through_cycles() -> None:
    root = Root()
    root.calls.back = root  # type: ignore[attr-defined]
    assert container_sizes({"gateway": root})["gateway.calls._live"] == 0


def test_grown_puts_the_largest_growth_first() -> None:
    first = {"a": 10, "b": 5, "c": 100}
    now = {"a": 12, "b": 50, "c": 100, "d": 3}
    assert grown(first, now, top=3) == [("b", 5, 50), ("d", 0, 3), ("a", 10, 12)]
    assert grown(first, now, top=10)[-1] == ("c", 100, 100)  # then the largest unchanged


def test_fd_kinds_group_sockets_and_pipes_and_name_files() -> None:
    kinds = fd_kinds(["socket:[12]", "socket:[13]", "pipe:[9]", "/data/gateway.db", "/data/gateway.db",
                      "anon_inode:[eventfd]"])
    assert kinds == {"socket": 2, "pipe": 1, "/data/gateway.db": 2, "anon_inode:[eventfd]": 1}


def test_a_report_names_the_site_and_the_container_that_grew() -> None:
    root = Root()
    watch = MemWatch({"gateway": root})
    was_tracing = tracemalloc.is_tracing()
    watch.start()
    try:
        first = watch.report()
        assert "top_since_first" not in first and first["fds"]
        for i in range(5000):
            root.calls._live[f"call-{i}"] = f"state of call {i}" * 4  # the growing line
        second = watch.report()
    finally:
        if not was_tracing:
            watch.stop()
    site = second["top_since_first"][0]
    assert site["at"][0].endswith(f"test_memwatch.py:{_growing_line()}")
    assert site["kb_grown"] > 100 and site["blocks_grown"] >= 5000
    assert second["containers"][0] == ("gateway.calls._live", 0, 5000)
    assert second["rss_kb"] > 0 and second["traced_kb"] > first["traced_kb"]


def _growing_line() -> int:
    import inspect

    src, start = inspect.getsourcelines(test_a_report_names_the_site_and_the_container_that_grew)
    return start + next(i for i, ln in enumerate(src) if "the growing line" in ln)


@pytest.mark.parametrize("value", ["", "0"])
def test_the_gateway_starts_no_watch_when_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV, value)
    assert interval_from_env() is None


def test_the_light_watch_traces_nothing_and_reports_sizes_and_heaps() -> None:
    from gateway.memwatch import LIGHT_ENV, watch_from_env

    assert watch_from_env({"gateway": Root()}, {}) is None
    full, every = watch_from_env({"gateway": Root()}, {ENV: "30", LIGHT_ENV: "5"})
    assert not full.light and every == 30.0
    root = Root()
    light, every = watch_from_env({"gateway": root}, {LIGHT_ENV: "5"})
    assert light.light and every == 5.0
    was_tracing = tracemalloc.is_tracing()
    light.start()
    assert tracemalloc.is_tracing() == was_tracing  # nothing traced
    first = light.report()
    root.calls._live["c1"] = object()
    second = light.report()
    assert "top_since_first" not in second and "types" not in second
    assert second["containers"][0] == ("gateway.calls._live", 0, 1)
    assert first["rss_kb"] > 0 and first["malloc_kb"]["arena"] > 0 and first["sqlite_kb"] is not None


def test_a_container_reached_two_ways_keeps_its_shorter_name() -> None:
    """Breadth first: the name does not depend on which way the walk met the object first (the
    encoded-event cache was `terminals._conns[].server._event_text` in one report and
    `control._event_text` in the next, so their sizes were not compared)."""
    root = Root()
    shared = Service()
    shared._live.update(a=1, b=2)

    class Conn:
        __module__ = "gateway.conn_fake"

    conn = Conn()
    conn.server = shared  # type: ignore[attr-defined]
    root.calls._live["c1"] = conn  # met first in attribute order, one level deeper
    root.control = shared  # type: ignore[attr-defined]
    sizes = container_sizes({"gateway": root})
    assert sizes["gateway.control._live"] == 2
    assert "gateway.calls._live[].server._live" not in sizes


def test_pymalloc_arenas_are_read_from_cpythons_own_statistics() -> None:
    """The light report counts CPython's object arenas (to tell their fragmentation from growth of
    objects in use): 10 MB of small objects more in use, within the arenas counted;
    and fd 2 is back where it was after the report."""
    from gateway.memwatch import LIGHT_ENV, parse_pymalloc, watch_from_env

    sample = ("# arenas allocated total           =                   30\n"
              "# arenas highwater mark            =                   12\n"
              "# arenas allocated current         =                   10\n"
              "10 arenas * 1048576 bytes/arena     =           10,485,760\n"
              "# bytes in allocated blocks        =            6,183,232\n"
              "# bytes in available blocks        =              289,440\n"
              "37 unused pools * 16384 bytes      =              606,208\n"
              "# bytes lost to pool headers       =                7,296\n")
    assert parse_pymalloc(sample) == {"arenas": 10, "arenas_highwater": 12, "in_use_kb": 6038,
                                      "free_blocks_kb": 282, "unused_pools_kb": 592}
    light, _ = watch_from_env({"gateway": Root()}, {LIGHT_ENV: "5"})
    before_fd2 = os.fstat(2)
    first = light.report()["pymalloc"]
    held = [(i, str(i)) for i in range(100_000)]  # ~10 MB of small objects
    second = light.report()["pymalloc"]
    # the blocks in use grow by the objects; where they go (new arenas, unused pools or free blocks
    # of partly used ones) depends on what ran before in this process
    assert second["in_use_kb"] >= first["in_use_kb"] + 5_000, (first, second)
    for r in (first, second):
        assert r["in_use_kb"] + r["free_blocks_kb"] + r["unused_pools_kb"] <= r["arenas"] * 1024, r
    del held
    after_fd2 = os.fstat(2)
    assert (after_fd2.st_dev, after_fd2.st_ino) == (before_fd2.st_dev, before_fd2.st_ino)
