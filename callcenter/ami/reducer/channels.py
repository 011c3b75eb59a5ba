"""Channels and the calls they make up: legs, linkedids, bridges, transfers, the DID, and the end of a call.

Handles Newchannel, Newstate, NewCallerid, Hangup, BridgeEnter, BridgeLeave, BlindTransfer and AttendedTransfer.
A call is keyed by its linkedid and made for its first channel; every channel is a leg of the call of its
linkedid (:func:`_with_leg`), and the call ends, with a CallEnded, when its last live leg hangs up. The DID
comes from the dialplan's CC_DID channel variable (manager.conf channelvars); until a channel event carries it,
it is the Exten of the call's first channel.
"""

from __future__ import annotations

from collections.abc import Mapping

from callcenter.ami.message import AmiMessage
from callcenter.ami.reducer._copy import _copy, _drop, _evolve, _put
from callcenter.ami.reducer._handler import Handler, Result, _int
from callcenter.ami.reducer.agents import _agent_leg_ended
from callcenter.callerid import ami_caller_name, ami_caller_number
from callcenter.dialplan import VAR_DID
from callcenter.events import CallEnded, CallTransferred, DomainEvent
from callcenter.model import Call, Channel, LiveModel, Transfer

# The channel variable (manager.conf channelvars) that carries the number the caller dialled: a snapshot's Exten
# is wherever the dialplan is now, so CoreShowChannel can tell the DID only through it.
DID_VARIABLE = VAR_DID


def _channel(headers: Mapping[str, str], now: float, old: Channel | None, bridge_id: str | None = None) -> Channel:
    """A channel as the event describes it; what the event does not say is kept from ``old``. ``headers`` is the
    event's :attr:`AmiMessage.lowered`; ``bridge_id`` replaces the channel's when given."""
    get = headers.get
    if old is None:
        uniqueid = get("uniqueid", "")
        # Positional arguments, in the order of the fields (keywords cost more, and this runs for most events).
        return Channel(
            uniqueid,
            get("channel", ""),
            get("linkedid", "") or uniqueid,
            _int(get("channelstate", "")),
            get("channelstatedesc", ""),
            ami_caller_number(get("calleridnum", "")),
            ami_caller_name(get("calleridname", "")),
            get("context", ""),
            get("exten", ""),
            "" if bridge_id is None else bridge_id,
            now,
        )
    # A value the event carries is decoded; the old one is decoded already.
    number, name = get("calleridnum"), get("calleridname")
    return Channel(
        old.uniqueid,
        get("channel", old.name),
        get("linkedid", old.linkedid) or old.linkedid or old.uniqueid,
        _int(get("channelstate", ""), old.state),
        get("channelstatedesc", old.state_desc),
        old.caller_number if number is None else ami_caller_number(number),
        old.caller_name if name is None else ami_caller_name(name),
        get("context", old.context),
        old.exten,
        old.bridge_id if bridge_id is None else bridge_id,
        old.created,
    )


def _did(event: AmiMessage) -> str:
    if "chanvariable" not in event.lowered:
        return ""
    return event.variables().get(DID_VARIABLE, "")


def _with_leg(model: LiveModel, channel: Channel, now: float, did: str = "", *, caller: bool = False) -> LiveModel:
    """The model with ``channel`` stored and counted as a leg of its call (a call is made for its first leg).

    ``did`` replaces the call's DID when not empty; with ``caller``, the call's caller follows its first leg's.
    The call's own channel (its uniqueid is the linkedid) always sets the caller, and once it is a leg no other
    does: after a reconnect the first event of a call may be its agent's leg, whose caller ID is the seat's.
    """
    uniqueid = channel.uniqueid
    linkedid = channel.linkedid
    bridge = channel.bridge_id
    channels = _put(model.channels, uniqueid, channel)
    call = model.calls.get(linkedid)
    if call is None:
        call = Call(
            linkedid,
            channel.created if channel.created <= now else now,  # started
            channel.caller_number,
            channel.caller_name,
            did or channel.exten,
            (uniqueid,),  # legs
            (bridge,) if bridge else (),  # bridges
        )
    else:
        legs = call.legs if uniqueid in call.legs else (*call.legs, uniqueid)
        bridges = call.bridges if not bridge or bridge in call.bridges else (*call.bridges, bridge)
        number, name = call.caller_number, call.caller_name
        if uniqueid == linkedid or (caller and legs[0] == uniqueid and linkedid not in legs):
            number, name = channel.caller_number, channel.caller_name
        did = did or call.did
        if (
            legs is call.legs
            and bridges is call.bridges
            and did == call.did
            and number == call.caller_number
            and name == call.caller_name
        ):
            return _evolve(model, channels=channels)
        call = _copy(call, did=did, legs=legs, bridges=bridges, caller_number=number, caller_name=name)
    return _evolve(model, channels=channels, calls=_put(model.calls, linkedid, call))


def _end_call(call: Call, now: float) -> Call:
    talk = call.talk_time
    if talk is None and call.answered_at is not None:
        talk = max(0.0, now - call.answered_at)
    segments = tuple(
        _copy(segment, talk_time=max(0.0, now - segment.answered_at))
        if segment.answered_at is not None and segment.talk_time is None
        else segment
        for segment in call.segments
    )
    return _copy(call, ended=now, talk_time=talk, segments=segments)


def _has_live_leg(channels: Mapping[str, Channel], call: Call) -> bool:
    """A channel of the call is still up. Every channel is a leg of the call of its linkedid (``_with_leg`` sees
    to it, ``rebuild`` keeps it), so the call's legs are the only channels to look at."""
    linkedid = call.linkedid
    for leg in call.legs:
        other = channels.get(leg)
        if other is not None and other.linkedid == linkedid:
            return True
    return False


def _on_newchannel(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    uniqueid = headers.get("uniqueid", "")
    if not uniqueid:
        return model, []
    return _with_leg(model, _channel(headers, now, model.channels.get(uniqueid)), now, _did(event)), []


def _on_channel_update(model: LiveModel, event: AmiMessage, now: float) -> Result:
    """Newstate and NewCallerid: the channel's state and caller id; the call's caller follows its first leg."""
    headers = event.lowered
    uniqueid = headers.get("uniqueid", "")
    if not uniqueid:
        return model, []
    channel = _channel(headers, now, model.channels.get(uniqueid))
    return _with_leg(model, channel, now, _did(event), caller=True), []


def _on_hangup(model: LiveModel, event: AmiMessage, now: float) -> Result:
    uniqueid = event.lowered.get("uniqueid", "")
    channel = model.channels.get(uniqueid)
    if channel is None:
        return model, []
    events: list[DomainEvent] = []
    model = _agent_leg_ended(model, channel, now, events)  # reads and changes no channel
    channels = _drop(model.channels, uniqueid)
    calls = model.calls
    call = calls.get(channel.linkedid)
    if call is not None and not _has_live_leg(channels, call):
        events.append(CallEnded(_end_call(call, now)))
        calls = _drop(calls, call.linkedid)
    return _evolve(model, channels=channels, calls=calls), events


def _on_bridge_enter(model: LiveModel, event: AmiMessage, now: float) -> Result:
    headers = event.lowered
    uniqueid = headers.get("uniqueid", "")
    if not uniqueid:
        return model, []
    channel = _channel(headers, now, model.channels.get(uniqueid), headers.get("bridgeuniqueid", ""))
    return _with_leg(model, channel, now), []


def _on_bridge_leave(model: LiveModel, event: AmiMessage, now: float) -> Result:
    channel = model.channels.get(event.lowered.get("uniqueid", ""))
    if channel is None or not channel.bridge_id:
        return model, []
    return _evolve(model, channels=_put(model.channels, channel.uniqueid, _copy(channel, bridge_id=""))), []


def _on_transfer(kind: str) -> Handler:
    def handler(model: LiveModel, event: AmiMessage, now: float) -> Result:
        prefix = "Transferer" if kind == "blind" else "OrigTransferer"
        linkedid = event.get(f"{prefix}Linkedid")
        call = model.calls.get(linkedid)
        if call is None:
            return model, []
        target = event.get("Extension") if kind == "blind" else event.get("SecondTransfererLinkedid")
        transfer = Transfer(kind=kind, at=now, channel=event.get(f"{prefix}Channel"), target=target)
        calls = _put(model.calls, linkedid, _copy(call, transfers=(*call.transfers, transfer)))
        return _evolve(model, calls=calls), [CallTransferred(linkedid, transfer)]

    return handler
