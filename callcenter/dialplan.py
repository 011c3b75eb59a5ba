"""Names shared by the engine and the dialplan templates in asterisk-conf/ (rendered with these values).

The engine tells the dialplan what to do next through channel variables set over AGI before the session ends;
the templates read the same names, so neither side spells them on its own.
"""

from __future__ import annotations

# What the dialplan does after the AGI session: one of the ACTION_* values.
VAR_ACTION = "CC_ACTION"
# Which queue to join and with what priority, when VAR_ACTION is ACTION_QUEUE.
VAR_QUEUE = "CC_QUEUE"
VAR_PRIORITY = "CC_PRIORITY"
# The caller's menu choice, kept on the channel for the queue and the records.
VAR_IVR_CHOICE = "CC_IVR_CHOICE"
# Why the caller is queued (the IVR's reason, e.g. fault_consultation). The engine sets it inheritable
# (``__CC_REASON``), so the agent's channel that the queue dials carries it too.
VAR_REASON = "CC_REASON"


def inherited(name: str) -> str:
    """The name that sets ``name`` on a channel and on every channel it creates (Dial, Queue members)."""
    return f"__{name}"


ACTION_QUEUE = "queue"
ACTION_HANGUP = "hangup"
# The engine could not finish the call's flow: queue the caller to the general queue as if it were down.
ACTION_FALLBACK = "fallback"

# The FastAGI route the DIDs run, and the dialplan contexts the templates define.
ROUTE_IVR = "ivr"
CONTEXT_PSTN = "from-pstn"
CONTEXT_PHONES = "from-phones"

# Prompts the sandbox puts in Asterisk's sounds directory (sounds/<lang>/callcenter/<name>.wav).
PROMPT_DIR = "callcenter"
PROMPT_APOLOGY = "callcenter/apology"
PROMPT_WELCOME = "callcenter/welcome"

# Asterisk's channel event log (asterisk-conf/cel_custom.conf), one JSON object per line, in Asterisk's
# log directory under cel-custom/; the engine reads it to reconcile call records.
CEL_LOG = "callcenter-cel.jsonl"

# The number the caller dialled, set by the dialplan on every inbound call and sent with channel events.
VAR_DID = "CC_DID"
# Expert handoff: the caller is redirected to this context with the handoff's id and the priority to use.
CONTEXT_EXPERT = "cc-expert"
VAR_HANDOFF = "CC_HANDOFF"
VAR_EXPERT_PRIORITY = "CC_EXPERT_PRIORITY"
VAR_EXPERT_TIMEOUT = "CC_EXPERT_TIMEOUT"
# Where the expert voicemail of a handoff nobody answered is recorded (without extension), set by the engine.
VAR_EXPERT_VOICEMAIL = "CC_EXPERT_VOICEMAIL"
PROMPT_EXPERT_BUSY = "callcenter/expert-busy"
PROMPT_CALLBACK_NOTED = "callcenter/callback-noted"

# Callbacks: the engine rings the agent's phone into this context, which then dials the customer.
CONTEXT_CALLBACK = "cc-callback"
VAR_CALLBACK_ID = "CC_CALLBACK_ID"
VAR_CALLBACK_NUMBER = "CC_CALLBACK_NUMBER"
# The longest a callback may last, in milliseconds (Dial's L() option hangs up then).
VAR_CALLBACK_LIMIT = "CC_CALLBACK_LIMIT"

# Full recording (asterisk-conf/extensions.conf): a subroutine Asterisk runs on the answering seat's channel (the
# queue member once connected; the agent's own channel before a callback or a desk call), which starts MixMonitor
# itself, so that every answered call is recorded whether or not the engine and the database are up. The file is
# <recordings>/full/<YYYY>/<MM>/<DD>/rec-<16 hex of MD5(linkedid)><16 hex of MD5(uniqueid)>.wav (UTC date):
# the engine finds a call's files by the first half (recordings.dialplan) and indexes them.
CONTEXT_RECORD = "cc-record"
# The queue the call is answered from, inherited by the member channel the queue dials (for the index row).
VAR_RECORD_QUEUE = "CC_REC_QUEUE"
# Raised on the recorded channel once MixMonitor runs: Id, Kind, Queue, File (the engine indexes it at once).
USER_EVENT_RECORDING = "CCRecording"
