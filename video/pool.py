"""Several Janus instances; each new stream goes to the least loaded one that is up.

The load of an instance is what the caller says it is (the video service counts its streams
and their viewers); an instance that is down (crashed, restarting) takes nothing. Scaling out
is adding instances (`video.instances`), each its own process with its own API port and RTP
port share. Each instance logs to `<run_dir>/janus-N.log` (kept after it stops). Instances on
other hosts (`[[video.remote]]`) are connected to and supervised alike, never started: scaling
beyond one host is adding them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from sip.lifeline import ChildRecord
from video.config import VideoConfig
from video.errors import JanusUnavailable
from video.janus_process import JanusInstance


class JanusPool:
    def __init__(self, config: VideoConfig, *, run_dir: str | Path,
                 on_down: Callable[[JanusInstance, str], None] | None = None,
                 on_up: Callable[[JanusInstance], None] | None = None) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.instances = []
        for i in range(config.instances):
            settings = config.janus_settings(i)
            settings = dataclasses.replace(settings, log_file=str(self.run_dir / f"{settings.name}.log"))
            self.instances.append(JanusInstance(
                settings, janus_bin=config.janus_bin, on_down=on_down, on_up=on_up,
                record=ChildRecord(self.run_dir / f"{settings.name}.pid")))
        for i, remote in enumerate(config.remote):  # on other hosts: connected to, not started
            self.instances.append(JanusInstance(remote.settings(i), on_down=on_down, on_up=on_up,
                                                remote=True))

    def reap(self) -> None:
        """End what a gateway killed with -9 left running (blocking: call in a thread)."""
        for inst in self.instances:
            if inst.record is not None:
                inst.record.reap()

    async def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.gather(*(i.start() for i in self.instances))

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.instances), return_exceptions=True)

    def pick(self, load_of: Callable[[JanusInstance], int]) -> JanusInstance:
        """The instance that is up with the least load (the first of equals)."""
        up = [i for i in self.instances
              if i.up.is_set() and i.client is not None and not i.client.closed.is_set()]
        if not up:
            raise JanusUnavailable("no Janus instance is up")
        return min(up, key=load_of)

    def by_name(self, name: str) -> JanusInstance | None:
        return next((i for i in self.instances if i.name == name), None)
