"""Conferences inside a worker (main thread): pjsua's conference bridge mixes the members.

Part of `Worker` (process.py). Each member's `AudioMedia` transmits to every other member's, so
the bridge sums, for each member, everyone but itself, in C; no frame crosses into Python. A
muted member stops transmitting to the others and still hears them. A member whose media is not
up yet is connected when it is (`connect_conference`, from onCallMediaState); a call that ends
leaves its conference (`leave_conference`); its stream is gone, so nothing is unbridged then.
A recorded conference has one recorder port that every heard member transmits to: the bridge
writes the mix to one WAV, closed by `conf_close`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pjsua2 as pj

from .commands import CommandError
from .pjcalls import WCall


# Voice activity of members, from the bridge's signal level of what each phone sends
# (AudioMedia.getRxLevel: 0..255, the mu-law of the mean amplitude, read on the main thread).
VOICE_POLL_S = 0.1
TALK_LEVEL = 20  # at or above: talking (digital silence reads 0; not tuned on real speech yet)
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
    ep: Any

    def poll_voice(self, now: float) -> None:
        """Main loop: emit `voice` events (talking true/false) for conference members."""
        if now < self.conf_voice_at:
            return
        self.conf_voice_at = now + VOICE_POLL_S
        for members in self.conferences.values():
            for call_id in members:
                call = self.calls.get(call_id)
                if call is None or call.done or call.audio_media is None:
                    continue
                try:
                    level = int(call.audio_media.getRxLevel())
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
            for call_id, muted in self.conferences.get(conf_id, {}).items():
                call = self.calls.get(call_id)
                if call is not None and not muted:
                    self._record(call, True)
        return {"recording": True}

    def cmd_conf_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """The conference is over: its recorder is destroyed (the WAV is complete on return)."""
        conf_id = str(cmd.get("conference_id") or "")
        rec = self.conf_recorders.pop(conf_id, None)
        for call_id in list(self.conferences.get(conf_id, {})):
            call = self.calls.get(call_id)
            if call is not None:
                self.cmd_conf_leave({"call_id": call_id})
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

    def cmd_conf_mute(self, cmd: dict[str, Any]) -> dict[str, Any]:
        call = self._call(cmd)
        members = self.conferences.get(call.conference or "")
        if members is None:
            raise CommandError("invalid-state", "the call is in no conference")
        muted = bool(cmd.get("muted"))
        members[call.call_id] = muted
        for other in self._others(call):
            self._transmit(call, other, not muted)
        self._record(call, not muted)
        return {"muted": muted}

    def cmd_conf_leave(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Take the call out of its conference (it stays up); a no-op if it is in none."""
        call = self.calls.get(str(cmd.get("call_id") or ""))
        if call is None or call.conference is None:
            return {"left": False}
        for other in self._others(call):
            self._transmit(call, other, False)
            self._transmit(other, call, False)
        self._record(call, False)
        self.leave_conference(call)
        return {"left": True}

    def connect_conference(self, call: WCall) -> None:
        """The call's audio is (re)negotiated: mix it with the other members' (both ways)."""
        members = self.conferences.get(call.conference or "")
        if members is None or call.audio_media is None:
            return
        for other in self._others(call):
            self._transmit(call, other, not members.get(call.call_id, False))
            self._transmit(other, call, not members.get(other.call_id, False))
        self._record(call, not members.get(call.call_id, False))

    def leave_conference(self, call: WCall) -> None:
        conf_id, call.conference = call.conference, None
        self.conf_voice.pop(call.call_id, None)
        members = self.conferences.get(conf_id or "")
        if members is None:
            return
        members.pop(call.call_id, None)
        if not members:
            del self.conferences[conf_id]

    def _others(self, call: WCall) -> list[WCall]:
        members = self.conferences.get(call.conference or "", {})
        others = (self.calls.get(cid) for cid in members if cid != call.call_id)
        return [o for o in others if o is not None and not o.done and o.audio_media is not None]

    def _record(self, call: WCall, on: bool) -> None:
        rec = self.conf_recorders.get(call.conference or "")
        if rec is None or call.done or call.audio_media is None:
            return
        try:
            if on:
                call.audio_media.startTransmit(rec)
            else:
                call.audio_media.stopTransmit(rec)
        except pj.Error:
            pass

    @staticmethod
    def _transmit(src: WCall, dst: WCall, on: bool) -> None:
        """src's audio into dst's mix (or out of it); never on the media of an ended call."""
        if src.done or dst.done or src.audio_media is None or dst.audio_media is None:
            return
        try:
            if on:
                src.audio_media.startTransmit(dst.audio_media)
            else:
                src.audio_media.stopTransmit(dst.audio_media)
        except pj.Error:
            pass
