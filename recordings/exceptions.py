"""Errors of the recordings API; each is an ApiError, so error_middleware renders it with its status and id."""

from __future__ import annotations

from typing import Any

from callcenter.web.errors import ApiError, Conflict, Forbidden, InvalidInput, NotFound


class InvalidFilter(InvalidInput):
    """A search filter or payload field is wrong; the details name the field."""

    def __init__(self, field: str, message: str) -> None:
        details: dict[str, Any] = {"fields": {field: message}}
        super().__init__(f"{field}: {message}", details)


class UnsafePath(InvalidInput):
    """A recording id or file name that could leave the recordings directory. Refused before any file access."""

    error_id = "unsafe_path"

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused recording path: {reason}", {"reason": reason})


class RecordingNotFound(NotFound):
    error_id = "recording_not_found"

    def __init__(self, recording_id: str) -> None:
        super().__init__("no such recording", {"id": recording_id})


class RecordingForbidden(Forbidden):
    error_id = "recording_forbidden"

    def __init__(self) -> None:
        super().__init__("you may only use recordings of your own calls")


class RecordingFileMissing(NotFound):
    error_id = "recording_file_missing"

    def __init__(self, recording_id: str) -> None:
        super().__init__("the recording's file is missing", {"id": recording_id})


class RecordingErased(ApiError):
    status = 410
    error_id = "recording_erased"

    def __init__(self, recording_id: str) -> None:
        super().__init__("the recording was erased", {"id": recording_id})


class RecordingTampered(Conflict):
    error_id = "recording_tampered"

    def __init__(self, recording_id: str) -> None:
        super().__init__(
            "the recording's file does not match the checksum taken when it was closed; it is not served",
            {"id": recording_id},
        )


class RecordingNotReady(Conflict):
    error_id = "recording_in_progress"

    def __init__(self, recording_id: str) -> None:
        super().__init__("the recording is still being made", {"id": recording_id})


class RecordingStateConflict(Conflict):
    error_id = "recording_state"

    def __init__(self, message: str, recording_id: str) -> None:
        super().__init__(message, {"id": recording_id})


class UnsupportedAudio(ApiError):
    status = 422
    error_id = "audio_unsupported"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TranscodeFailed(ApiError):
    status = 502
    error_id = "transcode_failed"

    def __init__(self, fmt: str) -> None:
        super().__init__(f"the recording could not be converted to {fmt}", {"format": fmt})


class RangeNotSatisfiable(ApiError):
    status = 416
    error_id = "range_not_satisfiable"

    def __init__(self, size: int, reason: str) -> None:
        super().__init__(
            f"the requested range cannot be served: {reason}",
            {"size": size},
            headers={"Content-Range": f"bytes */{size}"},
        )
