"""New calls in a worker against the budget of pjlib I/O queue keys (sans-I/O, no pjsua2).

Why (docs/design.md, "I/O keys of a worker"): pjsua creates an RTP and an RTCP socket for
every audio m-line of an incoming offer (up to 16) before the application hears of the call,
and every socket takes a key of the one I/O queue the SIP transport also uses. The pjsua2
wheel's queue has 64 keys (PJ_IOQUEUE_MAX_HANDLES; the source build of scripts/build_pjsua2.sh
4,096, with epoll: the worker passes the figure of the build in use, probe.py `ioqueue_keys`),
a closed socket's key comes back only
500 ms later (PJ_IOQUEUE_KEY_FREE_DELAY), and an empty queue fails an assertion that aborts
the process. Two INVITEs offering 17 m-lines, or 33 INVITE+CANCEL pairs within half a second,
killed a worker. So every new call first takes its keys from `IoBudget`; an INVITE that does
not fit (or offers more media than a dispatch call uses) goes to an account whose media is a
loopback transport (no sockets) and is refused there.
"""

from __future__ import annotations

import collections
import resource
from collections.abc import Hashable

IOQUEUE_KEYS = 64  # PJ_IOQUEUE_MAX_HANDLES in the pjsua2 wheel (select I/O queue); a build says its own
KEY_FREE_DELAY_S = 0.5  # PJ_IOQUEUE_KEY_FREE_DELAY: a closed socket's key is reusable after it
SIP_KEYS = 1  # the worker's UDP SIP transport
KEYS_PER_STREAM = 2  # RTP and RTCP
MARGIN_KEYS = 3
# Our callbacks see a call end slightly before pjsua closes its sockets: count the delay from then
# with room to spare.
LINGER_S = KEY_FREE_DELAY_S + 0.25
MAX_OFFER_MEDIA = 4  # m-lines in an offer we take; a dispatch call has one audio stream
# Keys an incoming call must leave free: two outbound calls' worth, so inbound churn never makes
# the dispatcher's dial wait (issue 8: inbound calls must not starve outbound dispatch).
DIAL_HEADROOM_KEYS = 2 * KEYS_PER_STREAM
PJSUA_MAX_CALL_MEDIA = 16
FD_RESERVE = 64  # descriptors a worker keeps for everything but its I/O queue (logs, pipes, ...)

REFUSE_MEDIA = 488  # an offer with more than MAX_OFFER_MEDIA m-lines
REFUSE_BUSY = 503  # no keys now (the front fails over to another worker)
REFUSE_FAILED = 500  # admission itself failed (our bug): refused rather than risk the process
REFUSAL_REASONS = {REFUSE_MEDIA: "Too Many Media Streams", REFUSE_BUSY: "No Room For Media",
                   REFUSE_FAILED: "Admission Failed"}


def usable_keys(compiled: int) -> int:
    """Keys of the worker's I/O queue it may fill: the build's `compiled` figure, within the file
    descriptors the process may open (its soft limit raised towards the hard one here: a worker
    of the source build holds hundreds of calls, two sockets each)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = compiled + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return compiled
    return max(0, min(compiled, soft - FD_RESERVE))


def offer_media(message: str) -> int:
    """The number of m-lines in the body of a SIP message (0: no body, or no SDP in it)."""
    head, sep, body = message.partition("\r\n\r\n")
    if not sep:
        head, sep, body = message.partition("\n\n")
    if not body:
        return 0
    return sum(1 for line in body.splitlines() if line.startswith("m="))


def call_keys(media: int) -> int:
    """Keys pjsua takes for a call whose offer has `media` m-lines (an offerless INVITE gets
    one audio stream)."""
    return KEYS_PER_STREAM * min(max(media, 1), PJSUA_MAX_CALL_MEDIA)


class IoBudget:
    """Keys held by live calls plus keys of closed sockets not yet reusable, against the total."""

    def __init__(self, total: int = IOQUEUE_KEYS, fixed: int = SIP_KEYS + MARGIN_KEYS,
                 linger: float = LINGER_S) -> None:
        self.limit = total - fixed
        self.linger = linger
        self.live: dict[Hashable, int] = {}
        self._closing: collections.deque[tuple[float, int]] = collections.deque()
        self._closing_keys = 0

    def in_use(self, now: float) -> int:
        while self._closing and self._closing[0][0] <= now:
            self._closing_keys -= self._closing.popleft()[1]
        return sum(self.live.values()) + self._closing_keys

    def reserve(self, owner: Hashable, keys: int, now: float, headroom: int = 0) -> bool:
        """Take `keys` for `owner` if they fit with `headroom` keys still free after them;
        False (nothing taken) when they do not."""
        if owner in self.live:
            raise ValueError(f"{owner!r} already holds keys")
        if self.in_use(now) + keys + headroom > self.limit:
            return False
        self.live[owner] = keys
        return True

    def rename(self, owner: Hashable, new_owner: Hashable) -> None:
        if owner in self.live:
            self.live[new_owner] = self.live.pop(owner)

    def release(self, owner: Hashable, now: float) -> None:
        """`owner`'s sockets are closed (or closing): its keys come back after `linger`."""
        keys = self.live.pop(owner, 0)
        if keys:
            self._closing.append((now + self.linger, keys))
            self._closing_keys += keys


def admit_invite(budget: IoBudget, owner: Hashable, message: str, now: float) -> int | None:
    """None when the INVITE may become a call (its keys are taken for `owner`), else the status
    code to refuse it with."""
    media = offer_media(message)
    if media > MAX_OFFER_MEDIA:
        return REFUSE_MEDIA
    if not budget.reserve(owner, call_keys(media), now, headroom=DIAL_HEADROOM_KEYS):
        return REFUSE_BUSY
    return None
