"""The one error hierarchy: each class carries its NetBackup status code and its wire name.

Server code raises these; the wire carries ``kind`` and ``status``; only ``openxbsa.xbsa``
maps a kind to a ``BSA_RC_*`` code.
"""

from __future__ import annotations


class OpenXBSAError(Exception):
    """A system error occurred."""

    status = 130
    kind = "system"

    def __init__(self, message: str | None = None, status: int | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidRequest(OpenXBSAError):
    """The request was malformed or not understood."""

    status = 133
    kind = "invalid_request"


class CallSequenceError(OpenXBSAError):
    """The call is not allowed in the current state of the session."""

    status = 133
    kind = "call_sequence"


class InvalidDescriptor(OpenXBSAError):
    """The object descriptor is invalid."""

    status = 133
    kind = "invalid_descriptor"


class InvalidQuery(OpenXBSAError):
    """The query descriptor is invalid."""

    status = 133
    kind = "invalid_query"


class InvalidEnvironment(OpenXBSAError):
    """An environment entry is invalid."""

    status = 133
    kind = "invalid_env"


class VersionNotSupported(OpenXBSAError):
    """The requested BSA_API_VERSION is not supported."""

    status = 133
    kind = "version"


class AuthenticationFailed(OpenXBSAError):
    """The client host could not be authenticated."""

    status = 131
    kind = "auth"


class ObjectNotFound(OpenXBSAError):
    """No such object, or it is not visible to this user and client."""

    status = 227
    kind = "not_found"


class InvalidCopyId(OpenXBSAError):
    """The copy ID is not a valid object copy ID."""

    status = 227
    kind = "invalid_copyid"


class AccessDenied(OpenXBSAError):
    """The user is not validated for this operation."""

    status = 135
    kind = "access"


class MediaWriteError(OpenXBSAError):
    """Media write error: the storage unit could not store the data."""

    status = 84
    kind = "system"


class MediaReadError(OpenXBSAError):
    """Media read error: the storage unit could not read the data."""

    status = 85
    kind = "system"


class CatalogError(OpenXBSAError):
    """Database system error in the catalog."""

    status = 220
    kind = "system"


class TransactionAborted(OpenXBSAError):
    """The transaction could not be committed and was aborted."""

    status = 6
    kind = "txn_aborted"


class DataBlockError(OpenXBSAError):
    """The data block is inconsistent."""

    status = 133
    kind = "invalid_datablock"


class BufferTooSmall(OpenXBSAError):
    """The supplied buffer is too small."""

    status = 133
    kind = "buffer_too_small"


class NoPolicy(OpenXBSAError):
    """No active policy with a schedule of the requested type exists for this client."""

    status = 198
    kind = "no_policy"


class FeatureNotLicensed(OpenXBSAError):
    """The requested feature is not enabled on this server."""

    status = 159
    kind = "not_licensed"


BY_KIND: dict[str, type[OpenXBSAError]] = {
    cls.kind: cls
    for cls in [
        OpenXBSAError, InvalidRequest, CallSequenceError, InvalidDescriptor, InvalidQuery,
        InvalidEnvironment, VersionNotSupported, AuthenticationFailed, ObjectNotFound,
        InvalidCopyId, AccessDenied, TransactionAborted, DataBlockError, BufferTooSmall,
        NoPolicy, FeatureNotLicensed,
    ]
}


class InvalidVote(OpenXBSAError):
    """The vote is not COMMIT, ABORT or CONDITIONAL."""

    status = 133
    kind = "invalid_vote"


BY_KIND[InvalidVote.kind] = InvalidVote


class NoMatch(OpenXBSAError):
    """No entity was found: the query matched nothing."""

    status = 227
    kind = "no_match"


BY_KIND[NoMatch.kind] = NoMatch


class WindowClosed(OpenXBSAError):
    """Operation not allowed during this time period: the Application Backup window is closed."""

    status = 199
    kind = "system"
