"""A connection's event subscription: the task pumping a bus subscription into the connection's
outbox, the `events.overflow` cut when the peer does not keep up, and the drop of a peer that
neither resubscribes nor reads after it. One per connection (gateway/connection.py), at most one
task running; replacing or stopping it closes its events here, even if the task never ran."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

import structlog
from websockets.exceptions import ConnectionClosed

from gateway.events import overflow_event
from gateway.protocol import codec
from gateway.server_config import maybe_await
from gateway.ws_write import flush, frame_text, write_frame_now

if TYPE_CHECKING:
    from gateway.connection import Connection

log = structlog.get_logger("gateway.server")


class SubscriptionPump:
    def __init__(self, conn: "Connection") -> None:
        self._conn = conn
        self._task: asyncio.Task | None = None
        self._events: AsyncIterator[Any] | None = None
        self._last_seq: int | None = None  # the last event handed to the outbox or written
        self._held = 0  # bytes of frames offered since the last flush (with the protocol, unsent)

    def start(self, events: AsyncIterator[Any]) -> None:
        """Pump `events` (items with `.to_params()` or event param dicts), replacing a running one."""
        self.stop()
        if self._conn.closed:
            self._close_events(events)
            return
        self._events = events
        self._last_seq = None
        set_sink = getattr(events, "set_sink", None)
        if set_sink is not None:  # a bus Subscription: live events come straight to _offer
            set_sink(self._offer, self._flush, self._offer_all)
        self._task = asyncio.get_running_loop().create_task(self._run(events), name=f"pump-{self._conn.id}")

    def stop(self) -> None:
        """Cancel the pump and close its events here: a pump cancelled before it ever ran never
        reaches its own `finally`, and its subscription would stay on the bus for good."""
        task, events = self._task, self._events
        self._task = self._events = None
        if task is not None and not task.done():
            task.cancel()
        if events is not None:
            self._close_events(events)

    def _close_events(self, events: AsyncIterator[Any]) -> None:
        close = getattr(events, "close", None)
        if close is not None and not hasattr(events, "aclose"):
            result = close()  # a bus Subscription closes synchronously
            if inspect.isawaitable(result):
                self._conn.server._spawn(result)
        else:
            self._conn.server._spawn(aclose(events))

    def _offer_all(self, events: Sequence[Any]) -> bool:
        """A commit's live events, next in seq order, while the pump is parked: their frames, built
        once for every subscriber (`ControlServer.events_wire`), written now in one write when
        nothing is queued or held before them; False (nothing taken) otherwise, and `_offer` takes
        them one by one."""
        conn = self._conn
        if self._held or conn._sending or conn.closed or len(conn._outbox):
            return False
        if not write_frame_now(conn._ws, conn.server.events_wire(events)):
            return False
        self._last_seq = events[-1].seq
        conn.stats["events_sent"] += len(events)
        return True

    def _offer(self, event: Any) -> bool:
        """One live event from the bus fan-out, while the pump is parked: its frame (encoded once
        for all subscribers) written now when nothing is queued before it, else queued; False
        when the outbox is full (the pump then takes it, with the grace and overflow below)."""
        conn = self._conn
        if conn.closed:
            return False
        text, data = conn.server.event_frame(event)
        outbox = conn._outbox
        if len(outbox) or conn._sending or not frame_text(conn._ws, data, self._held):
            if not outbox.put(text):
                return False
        else:
            self._held += len(data)
        self._last_seq = event.seq
        conn.stats["events_sent"] += 1
        return True

    def _flush(self) -> None:
        """The frames `_offer` left with the protocol for one commit's events: one write."""
        if self._held:
            self._held = 0
            flush(self._conn._ws)

    async def _run(self, events: AsyncIterator[Any]) -> None:
        conn = self._conn
        outbox, server = conn._outbox, conn.server
        plog = conn.log.bind(task="subscription")
        try:
            async for item in events:
                if hasattr(item, "to_params"):
                    if item.type != "events.overflow":
                        if not await self._put(events, item.seq, server.event_frame(item)[0], plog):
                            return
                        continue
                    params = item.to_params()
                else:
                    params = dict(item)
                if params.get("type") == "events.overflow":
                    outbox.put(codec.encode_event(params), reserve=True)
                    conn.stats["overflows"] += 1
                    plog.info("control.subscription.overflow", source="bus", seq=params.get("seq"))
                    server._spawn(self._drop_if_stalled(events))
                    return
                if not await self._put(events, params.get("seq"), server.encode_event(params), plog):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            plog.exception("control.subscription.crashed")
        finally:
            await aclose(events)

    async def _put(self, events: AsyncIterator[Any], seq: int | None, text: str, plog: Any) -> bool:
        """Queue one event's frame, waiting up to `subscription_grace_s` for room; when none comes,
        queue `events.overflow` (seq = the last event handed over) instead and return False."""
        conn = self._conn
        outbox, server = conn._outbox, conn.server
        if not outbox.put(text):
            if not (await outbox.wait_space(server.config.subscription_grace_s) and outbox.put(text)):
                last = self._last_seq if self._last_seq is not None else int(seq or 1) - 1
                overflow = overflow_event(last, "slow-consumer").to_params()
                outbox.put(codec.encode_event(overflow), reserve=True)
                conn.stats["overflows"] += 1
                plog.info("control.subscription.overflow", source="send-queue", seq=last)
                server._spawn(self._drop_if_stalled(events))
                return False
        self._last_seq = seq if seq is not None else self._last_seq
        conn.stats["events_sent"] += 1
        return True

    async def _drop_if_stalled(self, events: AsyncIterator[Any]) -> None:
        """After `events.overflow`: a peer that has neither resubscribed nor read what was queued
        for it within `overflow_close_s` is closed, not left holding send queues (1008; aborted if
        even the close cannot get through)."""
        conn = self._conn
        cfg = conn.server.config
        await asyncio.sleep(cfg.overflow_close_s)
        if conn.closed or self._events is not events or not (len(conn._outbox) or conn._sending):
            return
        conn.log.warning("control.conn.stalled-after-overflow", queued=len(conn._outbox),
                         after_s=cfg.overflow_close_s)
        try:
            await asyncio.wait_for(conn.close(1008, "not reading after events.overflow"), cfg.close_timeout)
        except (TimeoutError, ConnectionClosed):
            pass
        if not conn.closed:
            conn.abort()


async def aclose(events: Any) -> None:
    try:
        if hasattr(events, "aclose"):
            await events.aclose()
        elif hasattr(events, "close"):
            await maybe_await(events.close())
    except Exception:
        log.exception("control.subscription.close-failed")
