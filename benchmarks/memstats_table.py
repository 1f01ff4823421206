"""The gateway's memory reports (gateway/memwatch.py's `memwatch` lines in a gateway.log, e.g. a
soak's with `--memstats 60`) as a table: RSS, glibc in use and free, CPython's pymalloc in use,
in free blocks and its arenas, every `--every` reports from `--first`.

    .venv/bin/python -m benchmarks.memstats_table WORKDIR/gateway.log --first 10 --every 10

`WORKDIR` is the soak's work dir (its JSON's `workdir`). Sizes in MB.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import Any


def reports(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The `memwatch` events of a JSON-lines log, in order (other lines skipped)."""
    out = []
    for line in lines:
        if '"memwatch"' not in line:
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("event") == "memwatch":
            out.append(d)
    return out


def _mb(kb: float | None) -> str:
    return "" if kb is None else f"{kb / 1024:.1f}"


def row(d: dict[str, Any]) -> list[str]:
    m, p = d.get("malloc_kb") or {}, d.get("pymalloc") or {}
    return [str(d.get("n", "")), str(d.get("timestamp", ""))[11:19], _mb(d.get("rss_kb")), _mb(m.get("used")),
            _mb(m.get("free")), _mb(p.get("in_use_kb")), _mb(p.get("free_blocks_kb")), str(p.get("arenas", ""))]


def table(ds: list[dict[str, Any]], first: int = 0, every: int = 1) -> str:
    """Reports `first`, `first + every`, ... and the last one."""
    picked = ds[first::every]
    if ds and (not picked or picked[-1] is not ds[-1]):
        picked.append(ds[-1])
    head = ["report", "time (UTC)", "RSS", "glibc in use", "glibc free", "pymalloc in use",
            "pymalloc free blocks", "pymalloc arenas"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row(d)) + " |" for d in picked]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("log")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--every", type=int, default=10)
    a = p.parse_args(argv)
    with open(a.log, encoding="utf-8") as f:
        print(table(reports(f), a.first, a.every))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
