"""Conferences inside a worker (main thread): pjsua's conference bridge mixes the members.

Part of `Worker` (process.py). Each member's `AudioMedia` transmits to every other member's, so
the bridge sums, for each member, everyone but itself, in C; no frame crosses into Python. A
muted member stops transmitting to the others and still hears them. A member whose media is not
up yet is connected when it is (`connect_conference`, from onCallMediaState); a call that ends
leaves its conference (`leave_conference`); its stream is gone, so nothing is unbridged then.
A recorded conference has one recorder port that every heard member transmits to: the bridge
writes the mix to one WAV, closed by `conf_close`.

A console member (`conf_console`) is one more port in the bridge, a `CallPort` keyed by its
member's port id in `ports` like a call's: the console's frames (stdin, `push_audio`) play into
the mix, and what the bridge mixes for it (everyone but itself) goes back to the gateway as audio
of that id. Members are keyed by call id or port id; `_media` gives either's bridge port.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pjsua2 as pj

from .commands import CommandError
from .pjcalls import CallPort, WCall


# Voice activity of members, from the bridge's signal level of what each member sends into the mix,
# read on the main thread. pjsua2 2.15's AudioMedia names the levels from the port's side:
# getTxLevel() is what the port transmits into the bridge (pjmedia's rx_level of that port: what
# the phone sends), getRxLevel() what the bridge sends the port (what the phone hears). Both are
# percent, 0..100: the mu-law byte of the frame's mean |sample|, times 100/255 (not linear: 10 is
# about -40 dBFS, 20 about -30 dBFS, a tone at 0.3 of full scale 34; digital silence and a stream
# that receives no RTP read 0). docs/design.md, "Voice activity".
VOICE_POLL_S = 0.1
TALK_LEVEL = 10  # at or above (about -40 dBFS mean |sample|): talking; not tuned on real speech yet
SILENT_AFTER_S = 0.8  # this long below TALK_LEVEL: silent
VOICE_CHANGE_S = 1.0  # rate limit: at most one talking/silent change per member per second
RECORDER_CLOSE_S = 2.0  # conf_close waits at most this long for the bridge to close a recording


def wav_complete(path: str) -> bool:
    """The WAV's RIFF header gives its real size (pjmedia writes it when the port is destroyed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return len(head) == 8 and head[:4] == b"RIFF" and int.from_bytes(head[4:], "little") == size - 8


class ConferenceMixer:
    """Part of `Worker` (process.py): conference id -> {call id: muted}, on the main thread."""

    calls: dict[str, WCall]
    conferences: dict[str, dict[str, bool]]
    conf_recorders: dict[str, Any]  # conference id -> AudioMediaRecorder: the mix, as one WAV
    conf_record_paths: dict[str, str]  # conference id -> its WAV's path
    conf_voice: dict[str, list[float]]  # call id -> [talking 0/1, last loud, last change] (monotonic s)
    conf_voice_at: float  # next poll
    conf_consoles: dict[str, CallPort]  # port id -> a console member's port (conf_console)
    conf_of: dict[str, str]  # console port id -> its conference id
    ports: dict[str, CallPort]
    graveyard: list[Any]
    new_port: Any  # calls.py: a CallPort registered in `ports`
    ep: Any
    close_trunks: Any  # trunks.py

    def poll_voice(self, now: float) -> None:
        """Main loop: emit `voice` events (talking true/false) for conference members."""
        if now < self.conf_voice_at:
            return
        self.conf_voice_at = now + VOICE_POLL_S
        for members in self.conferences.values():
            for call_id in members:
                media = self._media(call_id)
                if media is None:
                    continue
                try:
                    level = int(media.getTxLevel())  # what the member sends, not what it hears
                except pj.Error:
                    continue
                v = self.conf_voice.setdefault(call_id, [0.0, 0.0, 0.0])
                if level >= TALK_LEVEL:
                    v[1] = now
                talking = now - v[1] < SILENT_AFTER_S if v[1] else False
                if talking != bool(v[0]) and now - v[2] >= VOICE_CHANGE_S:
                    v[0], v[2] = float(talking), now
                    self.emit({"type": "event", "call_id": call_id, "kind": "voice", "state": None,
                               "extra": {"talking": talking, "level": level}})

    def cmd_conf_record(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Record conference `conference_id` to the WAV `path`: every member that is heard
        (not muted) transmits to one recorder port too, which the bridge mixes like a member."""
        conf_id, path = str(cmd.get("conference_id") or ""), str(cmd.get("path") or "")
        if not conf_id or not path:
            raise CommandError("invalid-params", "conference_id and path are required")
        if conf_id not in self.conf_recorders:
            rec = pj.AudioMediaRecorder()
            rec.createRecorder(path)
            self.conf_recorders[conf_id] = rec
            self.conf_record_paths[conf_id] = path
            for key, muted in self.conferences.get(conf_id, {}).items():
                if not muted:
                    self._record(key, True)
        return {"recording": True}

    def cmd_conf_stats(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """RTP packets each member call's stream has received, by call id (what the bridge could
        mix from it: voice activity says that a member sends sound, this that its RTP arrives)."""
        rx: dict[str, int | None] = {}
        for member in self.conferences.get(str(cmd.get("conference_id") or ""), {}):
            call = self.calls.get(member)
            if call is None or call.done or call.audio_index < 0:
                continue
            try:
                rx[member] = int(call.getStreamStat(call.audio_index).rtcp.rxStat.pkt)
            except pj.Error:
                rx[member] = None
        return {"rx_packets": rx}

    def cmd_conf_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """The conference is over: its trunks are hung up, its recorder is destroyed (the WAV is
        complete on return)."""
        conf_id = str(cmd.get("conference_id") or "")
        self.close_trunks(conf_id)  # trunks.py: a conference spanning workers
        rec = self.conf_recorders.pop(conf_id, None)
        for key in list(self.conferences.get(conf_id, {})):
            self.cmd_conf_leave({"call_id": key})
        if rec is None:
            return {"closed": True}
        path = self.conf_record_paths.pop(conf_id, "")
        del rec  # main thread, outside any callback: pjsua_recorder_destroy
        # The bridge removes a port on its clock thread (asynchronous since pjproject 2.14): the
        # WAV's header is written when that happened. Answer once it has (a bounded wait).
        deadline = time.monotonic() + RECORDER_CLOSE_S
        while not wav_complete(path) and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        return {"closed": True, "complete": wav_complete(path)}

    def cmd_conf_join(self, cmd: dict[str, Any]) -> dict[str, Any]:
        call = self._call(cmd)
        if call.local_end is not None:
            raise CommandError("invalid-state", "the call is ending")
        conf_id = str(cmd.get("conference_id") or "")
        if not conf_id:
            raise CommandError("invalid-params", "conference_id is required")
        if call.conference not in (None, conf_id):
            raise CommandError("invalid-state", f"the call is in conference {call.conference!r}")
        members = self.conferences.setdefault(conf_id, {})
        members[call.call_id] = bool(cmd.get("muted"))
        call.conference = conf_id
        self.connect_conference(call)
        return {"members": len(members), "mixed": call.audio_media is not None}

    def cmd_conf_console(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A console joins conference `conference_id` as port `call_id` (a member's port id):
        its frames play into the mix, the mix minus itself comes back as that id's audio."""
        key, conf_id = str(cmd.get("call_id") or ""), str(cmd.get("conference_id") or "")
        if not key or not conf_id:
            raise CommandError("invalid-params", "call_id and conference_id are required")
        if key in self.ports or key in self.calls:
            raise CommandError("invalid-state", f"{key} is in use")
        port = self.conf_consoles[key] = self.new_port(key, "console")
        port.listening = True
        self.conf_of[key] = conf_id
        members = self.conferences.setdefault(conf_id, {})
        members[key] = bool(cmd.get("muted"))
        self._connect(key)
        return {"members": len(members), "mixed": True}

    def cmd_conf_mute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        key = str(cmd.get("call_id") or "")
        if key not in self.conf_consoles:
            self._call(cmd)  # no-such-call for an unknown call
        members = self.conferences.get(self._conf_id(key) or "")
        if members is None:
            raise CommandError("invalid-state", "the call is in no conference")
        muted = bool(cmd.get("muted"))
        members[key] = muted
        for other in self._others(key):
            self._transmit(key, other, not muted)
        self._record(key, not muted)
        return {"muted": muted}

    def cmd_conf_leave(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Take the call out of its conference (it stays up), or drop a console member's port;
        a no-op if it is in none."""
        key = str(cmd.get("call_id") or "")
        if self._conf_id(key) is None:
            return {"left": False}
        for other in self._others(key):
            self._transmit(key, other, False)
            self._transmit(other, key, False)
        self._record(key, False)
        port = self.conf_consoles.pop(key, None)
        if port is not None:
            conf_id = self.conf_of.pop(key)
            self.ports.pop(key, None)
            port.close()
            self.graveyard.append(port)  # released on the main loop, outside any callback
            self._forget_member(conf_id, key)
        else:
            self.leave_conference(self.calls[key])
        return {"left": True}

    def connect_conference(self, call: WCall) -> None:
        """The call's audio is (re)negotiated: mix it with the other members' (both ways)."""
        if call.conference is not None and call.audio_media is not None:
            self._connect(call.call_id)

    def leave_conference(self, call: WCall) -> None:
        conf_id, call.conference = call.conference, None
        self._forget_member(conf_id, call.call_id)

    def _forget_member(self, conf_id: str | None, key: str) -> None:
        self.conf_voice.pop(key, None)
        members = self.conferences.get(conf_id or "")
        if members is None:
            return
        members.pop(key, None)
        if not members:
            del self.conferences[conf_id or ""]

    def _connect(self, key: str) -> None:
        members = self.conferences.get(self._conf_id(key) or "")
        if members is None or self._media(key) is None:
            return
        for other in self._others(key):
            self._transmit(key, other, not members.get(key, False))
            self._transmit(other, key, not members.get(other, False))
        self._record(key, not members.get(key, False))

    def _conf_id(self, key: str) -> str | None:
        """The conference of member `key` (a call id, or a console's port id)."""
        if key in self.conf_of:
            return self.conf_of[key]
        call = self.calls.get(key)
        return call.conference if call is not None else None

    def _media(self, key: str) -> Any:
        """Member `key`'s port in the bridge: a console's port, or a call's AudioMedia; None when
        it has none (media not up yet) or must not be touched (an ended call, a closed port)."""
        port = self.conf_consoles.get(key)
        if port is not None:
            return None if port.closed else port
        call = self.calls.get(key)
        return None if call is None or call.done else call.audio_media

    def _others(self, key: str) -> list[str]:
        members = self.conferences.get(self._conf_id(key) or "", {})
        return [k for k in members if k != key and self._media(k) is not None]

    def _record(self, key: str, on: bool) -> None:
        rec = self.conf_recorders.get(self._conf_id(key) or "")
        media = self._media(key)
        if rec is None or media is None:
            return
        try:
            if on:
                media.startTransmit(rec)
            else:
                media.stopTransmit(rec)
        except pj.Error:
            pass

    def _transmit(self, src: str, dst: str, on: bool) -> None:
        """src's audio into dst's mix (or out of it); never on the media of an ended call."""
        a, b = self._media(src), self._media(dst)
        if a is None or b is None:
            return
        try:
            if on:
                a.startTransmit(b)
            else:
                a.stopTransmit(b)
        except pj.Error:
            pass
