"""The control-channel methods of v1, each a thin call into its service."""

from __future__ import annotations

from typing import Any

from gateway.broadcast.service import BroadcastService
from gateway.directory import Directory
from gateway.events import EventBus
from gateway.kpi.service import KpiService
from gateway.protocol import Registry, RequestContext
from gateway.protocol.kpi import epoch
from gateway.services.calls import CallService
from gateway.services.media import MediaService
from gateway.services.sessions import SessionService
from gateway.services.sms import SmsService
from gateway.services.instructions import InstructionService
from gateway.services.terminals import TerminalService
from gateway.uploads.feedback import FeedbackService
from gateway.services.video import VideoService
from gateway.services.conferences import ConferenceService
from gateway.services.voice import VoiceService


def register_all(registry: Registry, *, bus: EventBus, directory: Directory, sessions: SessionService,
                 calls: CallService, media: MediaService, broadcasts: BroadcastService,
                 sms: SmsService, video: VideoService,
                 voice: VoiceService) -> None:
    """Plug every service into the method table (the table itself lives in gateway.protocol)."""

    async def session_create(ctx: RequestContext, p: Any) -> dict:
        return await sessions.create(title=p.title, created_by=ctx.principal.name, audit=ctx.audit)

    async def session_list(ctx: RequestContext, p: Any) -> dict:
        return await sessions.list_result(state=p.state)  # encoded once between session writes

    async def session_get(ctx: RequestContext, p: Any) -> dict:
        return await sessions.get(p.session_id)

    async def session_close(ctx: RequestContext, p: Any) -> dict:
        return await sessions.close(p.session_id, closed_by=ctx.principal.name, audit=ctx.audit)

    async def events_subscribe(ctx: RequestContext, p: Any) -> dict:
        since = p.since_seq if p.since_seq is not None else bus.last_seq
        ctx.connection.start_subscription(bus.subscribe(since))
        return {"since_seq": since, "last_seq": bus.last_seq}

    async def directory_list(ctx: RequestContext, p: Any) -> dict:
        return {"endpoints": [e.public() for e in directory.list(kind=p.kind, group=p.group)],
                "groups": directory.groups(),
                # multicast paging zones (broadcast targets `zone:NAME`): what a console lists
                "zones": [{"name": z.name, "codec": z.codec} for z in broadcasts.config.zones],
                # broadcast.start's priorities, highest first: what a console offers
                "priorities": list(broadcasts.config.priorities)}

    async def call_dial(ctx: RequestContext, p: Any) -> dict:
        return await calls.dial(target=p.target, session_id=p.session_id, principal=ctx.principal.name,
                                from_uri=p.from_uri, display_name=p.display_name, headers=p.headers,
                                timeout_s=p.timeout_s)

    async def call_list(ctx: RequestContext, p: Any) -> dict:
        return {"calls": calls.list_live(p.session_id)}

    async def call_answer(ctx: RequestContext, p: Any) -> dict:
        return await calls.answer(p.call_id)

    async def call_reject(ctx: RequestContext, p: Any) -> dict:
        return await calls.reject(p.call_id, p.code)

    async def call_hangup(ctx: RequestContext, p: Any) -> dict:
        return await calls.hangup(p.call_id)

    async def call_hold(ctx: RequestContext, p: Any) -> dict:
        return await calls.hold(p.call_id)

    async def call_unhold(ctx: RequestContext, p: Any) -> dict:
        return await calls.unhold(p.call_id)

    async def call_dtmf(ctx: RequestContext, p: Any) -> dict:
        return await calls.dtmf(p.call_id, p.digits)

    async def call_transfer(ctx: RequestContext, p: Any) -> dict:
        return await calls.transfer(p.call_id, p.target)

    async def call_listen(ctx: RequestContext, p: Any) -> dict:
        return await media.open(ctx.connection, p.call_id, direction="out", rate=16000)

    async def media_open(ctx: RequestContext, p: Any) -> dict:
        if p.broadcast_id is not None:
            return media.open_broadcast(ctx.connection, p.broadcast_id, rate=p.rate)
        return await media.open(ctx.connection, p.call_id, direction=p.direction, rate=p.rate)

    async def broadcast_start(ctx: RequestContext, p: Any) -> dict:
        return await broadcasts.start(
            principal=ctx.principal.name, targets=p.targets, source=p.source.model_dump(),
            priority=p.priority, session_id=p.session_id, max_duration_s=p.max_duration_s,
            repeat=p.repeat, repeat_gap_s=p.repeat_gap_s, chime=p.chime)

    async def broadcast_stop(ctx: RequestContext, p: Any) -> dict:
        return await broadcasts.stop(p.broadcast_id)

    async def broadcast_get(ctx: RequestContext, p: Any) -> dict:
        return await broadcasts.get(p.broadcast_id)

    async def sms_send(ctx: RequestContext, p: Any) -> dict:
        return await sms.send(principal=ctx.principal.name, to=p.to, body=p.body, template=p.template,
                              variables=p.variables, session_id=p.session_id, sender=p.sender)

    async def sms_get(ctx: RequestContext, p: Any) -> dict:
        return await sms.get(message_id=p.message_id, send_id=p.send_id)

    async def sms_preview(ctx: RequestContext, p: Any) -> dict:
        return sms.preview(p.body, p.template, p.variables)

    async def sms_templates(ctx: RequestContext, p: Any) -> dict:
        return sms.templates()

    async def media_close(ctx: RequestContext, p: Any) -> dict:
        return await media.close(ctx.connection, p.channel)

    async def video_pull(ctx: RequestContext, p: Any) -> dict:
        return await video.pull(principal=ctx.principal.name, terminal_id=p.terminal_id,
                                session_id=p.session_id)

    async def video_publish(ctx: RequestContext, p: Any) -> dict:
        return await video.publish(terminal_id=video.terminal_of(ctx), stream_id=p.stream_id, sdp=p.sdp)

    async def video_watch(ctx: RequestContext, p: Any) -> dict:
        return await video.watch(ctx.connection, p.stream_id)

    async def video_answer(ctx: RequestContext, p: Any) -> dict:
        return await video.answer(ctx.connection, p.watch_id, p.sdp)

    async def video_unwatch(ctx: RequestContext, p: Any) -> dict:
        return await video.unwatch(ctx.connection, p.watch_id)

    async def video_stop(ctx: RequestContext, p: Any) -> dict:
        return await video.stop_stream(p.stream_id, terminal_id=video.terminal_of(ctx))

    async def video_get(ctx: RequestContext, p: Any) -> dict:
        return video.get(p.stream_id)

    async def video_list(ctx: RequestContext, p: Any) -> dict:
        return {"streams": video.list(p.session_id)}

    async def voice_bridge(ctx: RequestContext, p: Any) -> dict:
        return await voice.bridge(principal=ctx.principal.name, terminal_id=p.terminal_id,
                                  target=p.target, session_id=p.session_id)

    async def voice_publish(ctx: RequestContext, p: Any) -> dict:
        return await voice.publish(terminal_id=video.terminal_of(ctx), bridge_id=p.bridge_id, sdp=p.sdp)

    async def voice_hangup(ctx: RequestContext, p: Any) -> dict:
        return await voice.hangup(p.bridge_id, terminal_id=video.terminal_of(ctx))

    async def voice_get(ctx: RequestContext, p: Any) -> dict:
        return voice.get(p.bridge_id)

    for name, handler in {
        "session.create": session_create, "session.list": session_list, "session.get": session_get,
        "session.close": session_close, "events.subscribe": events_subscribe,
        "directory.list": directory_list, "call.dial": call_dial, "call.list": call_list,
        "call.answer": call_answer,
        "call.reject": call_reject, "call.hangup": call_hangup, "call.hold": call_hold,
        "call.unhold": call_unhold, "call.dtmf": call_dtmf, "call.transfer": call_transfer,
        "call.listen": call_listen, "media.open": media_open, "media.close": media_close,
        "broadcast.start": broadcast_start, "broadcast.stop": broadcast_stop,
        "broadcast.get": broadcast_get, "sms.send": sms_send, "sms.get": sms_get,
        "sms.preview": sms_preview, "sms.templates": sms_templates,
        "video.pull": video_pull, "video.publish": video_publish,
        "video.watch": video_watch, "video.answer": video_answer, "video.unwatch": video_unwatch,
        "video.stop": video_stop, "video.get": video_get, "video.list": video_list,
        "voice.bridge": voice_bridge, "voice.publish": voice_publish, "voice.hangup": voice_hangup,
        "voice.get": voice_get,
    }.items():
        registry.register(name, handler)


def register_terminals(registry: Registry, terminals: TerminalService, instructions: InstructionService) -> None:
    """The terminal.* methods (a terminal acts only for itself: TerminalService.acting_for)."""

    async def terminal_report(ctx: RequestContext, p: Any) -> dict:
        return await terminals.report(ctx, p.terminal_id, p.fix())

    async def terminal_list(ctx: RequestContext, p: Any) -> dict:
        return terminals.list(p.group, p.limit, p.after)

    async def terminal_track(ctx: RequestContext, p: Any) -> dict:
        return await terminals.track(ctx, p.terminal_id, p.since, p.until, p.limit)

    async def terminal_instruct(ctx: RequestContext, p: Any) -> dict:
        return await instructions.instruct(ctx.principal.name, p)

    async def terminal_received(ctx: RequestContext, p: Any) -> dict:
        return await instructions.received(ctx, p.instruction_id, p.terminal_id)

    async def terminal_ack(ctx: RequestContext, p: Any) -> dict:
        return await instructions.ack(ctx, p.instruction_id, p.terminal_id)

    async def instruction_get(ctx: RequestContext, p: Any) -> dict:
        return await instructions.get(p.instruction_id)

    async def terminal_instructions(ctx: RequestContext, p: Any) -> dict:
        return await instructions.of_terminal(ctx, p.terminal_id, p.state, p.limit, p.after)

    for name, handler in {
        "terminal.report": terminal_report, "terminal.list": terminal_list,
        "terminal.track": terminal_track, "terminal.instruct": terminal_instruct,
        "terminal.received": terminal_received, "terminal.ack": terminal_ack,
        "terminal.instruction.get": instruction_get, "terminal.instructions": terminal_instructions,
    }.items():
        registry.register(name, handler)


def register_feedback(registry: Registry, feedback: FeedbackService) -> None:
    """terminal.feedback: text and uploads into an incident (a terminal posts only as itself)."""

    async def terminal_feedback(ctx: RequestContext, p: Any) -> dict:
        return await feedback.post(ctx, p.terminal_id, p.session_id, p.text, list(p.uploads))

    registry.register("terminal.feedback", terminal_feedback)


def register_conferences(registry: Registry, conferences: ConferenceService) -> None:
    """The conference.* methods: calls mixed by one SIP worker's conference bridge."""

    async def create(ctx: RequestContext, p: Any) -> dict:
        return await conferences.create(principal=ctx.principal.name, session_id=p.session_id,
                                        title=p.title, record=p.record,
                                        dial_in=None if p.dial_in is None else {"pin": p.dial_in.pin})

    async def add(ctx: RequestContext, p: Any) -> dict:
        if p.terminal_id is not None:
            return await conferences.add_terminal(principal=ctx.principal.name, conference_id=p.conference_id,
                                                  terminal_id=p.terminal_id, chair=p.chair)
        if p.console:
            return await conferences.add_console(ctx.connection, conference_id=p.conference_id, rate=p.rate,
                                                 chair=p.chair)
        return await conferences.add(principal=ctx.principal.name, conference_id=p.conference_id,
                                     target=p.target, call_id=p.call_id, chair=p.chair)

    async def remove(ctx: RequestContext, p: Any) -> dict:
        return await conferences.remove(p.conference_id, p.member_id)

    async def mute(ctx: RequestContext, p: Any) -> dict:
        return await conferences.mute(p.conference_id, p.member_id, p.all_but_chair, True)

    async def unmute(ctx: RequestContext, p: Any) -> dict:
        return await conferences.mute(p.conference_id, p.member_id, p.all_but_chair, False)

    async def end(ctx: RequestContext, p: Any) -> dict:
        return await conferences.end(p.conference_id)

    async def get(ctx: RequestContext, p: Any) -> dict:
        return conferences.get(p.conference_id)

    async def list_(ctx: RequestContext, p: Any) -> dict:
        return {"conferences": conferences.list(p.session_id)}

    for name, handler in {
        "conference.create": create, "conference.add": add, "conference.remove": remove,
        "conference.mute": mute, "conference.unmute": unmute, "conference.end": end,
        "conference.get": get, "conference.list": list_,
    }.items():
        registry.register(name, handler)


def register_kpi(registry: Registry, kpi: KpiService) -> None:
    """kpi.get and kpi.maintenance.list (dispatcher, observer, admin); kpi.maintenance.add and
    .delete (admin)."""

    async def get(ctx: RequestContext, p: Any) -> dict:
        return await kpi.get(epoch(p.since), None if p.until is None else epoch(p.until), p.group_by)

    async def maintenance_add(ctx: RequestContext, p: Any) -> dict:
        return await kpi.add_maintenance(epoch(p.start), epoch(p.end), list(p.parts), p.reason,
                                         ctx.principal.name)

    async def maintenance_list(ctx: RequestContext, p: Any) -> dict:
        return await kpi.list_maintenance(None if p.since is None else epoch(p.since),
                                          None if p.until is None else epoch(p.until))

    async def maintenance_delete(ctx: RequestContext, p: Any) -> dict:
        return await kpi.remove_maintenance(p.maintenance_id, ctx.principal.name, ctx.principal.role)

    registry.register("kpi.get", get)
    registry.register("kpi.maintenance.add", maintenance_add)
    registry.register("kpi.maintenance.list", maintenance_list)
    registry.register("kpi.maintenance.delete", maintenance_delete)
