"""HTTP handlers of the recordings API: validate, call a part of RecordingService, serialise. Nothing else happens.

Reading, editing and playing one recording needs a login only at the route; whether this user may use this
recording (everything with recordings.play_all, their own calls with recordings.play_own) is the service's
rule (recordings.access, applied by the index), because it depends on the row.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from callcenter.auth.middleware import principal
from callcenter.auth.permissions import Permission, requires
from callcenter.web.errors import read_json
from recordings.keys import RECORDINGS
from recordings.schemas import AudioQuery, EditIn, EraseIn, SearchQuery, WaveformQuery
from recordings.storage import check_recording_id
from recordings.streaming import stream_fd

recordings_routes = web.RouteTableDef()


def _recording_id(request: web.Request) -> str:
    # Refused before any database or file access: the id is the only name a client may give.
    return check_recording_id(request.match_info["recording_id"])


def _query(request: web.Request) -> dict[str, str]:
    return dict(request.query)


def _repeated(request: web.Request) -> set[str]:
    # keys() lists each name once; items() lists every occurrence.
    keys = [key for key, _ in request.query.items()]
    return {key for key in keys if keys.count(key) > 1}


@recordings_routes.get("/api/v1/recordings")
@requires(Permission.RECORDINGS_SEARCH)
async def search(request: web.Request) -> web.Response:
    query = SearchQuery.from_query(_query(request), _repeated(request))
    page = await request.config_dict[RECORDINGS].index.search(query)
    return web.json_response(page.as_json())


@recordings_routes.post("/api/v1/recordings/erase")
@requires(Permission.RECORDINGS_ERASE)
async def erase(request: web.Request) -> web.Response:
    body = EraseIn.model_validate(await read_json(request))
    erasure = await request.config_dict[RECORDINGS].retention.erase_by_number(
        body.number, body.reason, actor=principal(request).username, remote=request.remote
    )
    return web.json_response(erasure.as_json(), status=201)


@recordings_routes.get("/api/v1/recordings/{recording_id}")
@requires()
async def get_recording(request: web.Request) -> web.Response:
    recording_id = _recording_id(request)
    info = await request.config_dict[RECORDINGS].index.get(recording_id, principal(request), remote=request.remote)
    return web.json_response(info.as_json())


@recordings_routes.patch("/api/v1/recordings/{recording_id}")
@requires()
async def edit_recording(request: web.Request) -> web.Response:
    recording_id = _recording_id(request)
    body = EditIn.model_validate(await read_json(request))
    info = await request.config_dict[RECORDINGS].index.edit(
        recording_id, principal(request), description=body.description, tags=body.tags, remote=request.remote
    )
    return web.json_response(info.as_json())


@recordings_routes.get("/api/v1/recordings/{recording_id}/audio")
@requires()
async def audio(request: web.Request) -> web.StreamResponse:
    recording_id = _recording_id(request)
    query = AudioQuery.model_validate(_query(request))
    playable = await request.config_dict[RECORDINGS].playback.open_audio(
        recording_id,
        principal(request),
        query.format,
        remote=request.remote,
        range_header=request.headers.get(hdrs.RANGE),
        head=request.method == hdrs.METH_HEAD,
    )
    try:
        return await stream_fd(
            request,
            playable.fd,
            playable.size,
            content_type=playable.content_type,
            etag=playable.etag,
            filename=playable.filename,
        )
    finally:
        playable.close()


@recordings_routes.get("/api/v1/recordings/{recording_id}/waveform")
@requires()
async def waveform(request: web.Request) -> web.Response:
    recording_id = _recording_id(request)
    query = WaveformQuery.model_validate(_query(request))
    peaks = await request.config_dict[RECORDINGS].playback.waveform(
        recording_id, principal(request), query.points, remote=request.remote
    )
    return web.json_response(peaks)
