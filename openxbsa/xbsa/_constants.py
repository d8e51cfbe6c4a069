"""XBSA 1.1 (Open Group C425) and NetBackup XBSA constants, with their C names and values."""

# ---- return codes (C425)
BSA_RC_SUCCESS = 0x00
BSA_RC_ABORT_SYSTEM_ERROR = 0x03
BSA_RC_AUTHENTICATION_FAILURE = 0x04
BSA_RC_INVALID_CALL_SEQUENCE = 0x05
BSA_RC_INVALID_HANDLE = 0x06
BSA_RC_INVALID_VOTE = 0x0B
BSA_RC_NO_MATCH = 0x11
BSA_RC_NO_MORE_DATA = 0x12
BSA_RC_OBJECT_NOT_FOUND = 0x1A
BSA_RC_TRANSACTION_ABORTED = 0x20
BSA_RC_INVALID_DATABLOCK = 0x34
BSA_RC_VERSION_NOT_SUPPORTED = 0x4B
BSA_RC_ACCESS_FAILURE = 0x4D
BSA_RC_BUFFER_TOO_SMALL = 0x4E
BSA_RC_INVALID_COPYID = 0x4F
BSA_RC_INVALID_ENV = 0x50
BSA_RC_INVALID_OBJECTDESCRIPTOR = 0x51
BSA_RC_INVALID_QUERYDESCRIPTOR = 0x53
BSA_RC_NULL_ARGUMENT = 0x55

# ---- NetBackup return codes. NetBackup's values were not published in what we could read;
# ours sit above every C425 and draft value so they can never be confused (docs/decisions.md).
NBBSA_RC_FEATURE_NOT_LICENSED = 0x1001

# ---- NBBSALogMsg message types (NetBackup's MSINFO / MSWARNING / MSERROR)
NBBSA_MS_INFO = MSINFO = 0
NBBSA_MS_WARNING = MSWARNING = 1
NBBSA_MS_ERROR = MSERROR = 2

# ---- NBBSA_JobInfo.jobType / jobState (NetBackup's job codes)
NBBSA_JOB_BACKUP = 0
NBBSA_JOB_RESTORE = 2
NBBSA_JOB_IMAGE_DELETE = 17
NBBSA_JOB_QUEUED = 0
NBBSA_JOB_ACTIVE = 1
NBBSA_JOB_DONE = 3

# ---- enumerations
BSA_ANY = 1
BSA_CopyType_ANY = 1
BSA_CopyType_ARCHIVE = 2
BSA_CopyType_BACKUP = 3
BSA_ObjectStatus_ANY = 1
BSA_ObjectStatus_MOST_RECENT = 2
BSA_ObjectStatus_NOT_MOST_RECENT = 3
BSA_ObjectType_ANY = 1
BSA_ObjectType_FILE = 2
BSA_ObjectType_DIRECTORY = 3
BSA_ObjectType_OTHER = 4
BSA_Vote_COMMIT = 1
BSA_Vote_ABORT = 2
NBBSA_Vote_CONDITIONAL = 99

# ---- sizes of the C character arrays (terminating NUL included)
BSA_MAX_APPOBJECT_OWNER = 64
BSA_MAX_BSAOBJECT_OWNER = 64
BSA_MAX_DESCRIPTION = 100
BSA_MAX_OBJECTSPACENAME = 1024
BSA_MAX_OBJECTINFO = 256
BSA_MAX_PATHNAME = 1024
BSA_MAX_RESOURCETYPE = 31
BSA_MAX_TOKEN_SIZE = 64

RC_NAMES = {v: k for k, v in list(globals().items())
            if (k.startswith("BSA_RC_") or k.startswith("NBBSA_RC_")) and isinstance(v, int)}
MEDIA_ID_MAX = 6   # NetBackup media IDs are at most six characters

RC_TEXT = {
    BSA_RC_SUCCESS: "The call completed successfully.",
    BSA_RC_ABORT_SYSTEM_ERROR: "The backup service hit a system error and aborted the operation.",
    BSA_RC_AUTHENTICATION_FAILURE: "The caller could not be authenticated by the backup service.",
    BSA_RC_INVALID_CALL_SEQUENCE: "The call is not allowed in the current state of the session.",
    BSA_RC_INVALID_HANDLE: "The handle does not denote an open session.",
    BSA_RC_INVALID_VOTE: "The vote is not BSA_Vote_COMMIT, BSA_Vote_ABORT or NBBSA_Vote_CONDITIONAL.",
    BSA_RC_NO_MATCH: "No object matched the query.",
    BSA_RC_NO_MORE_DATA: "There is no more data (end of the object or of the query results).",
    BSA_RC_OBJECT_NOT_FOUND: "The object does not exist or is not visible to this user and client.",
    BSA_RC_TRANSACTION_ABORTED: "The transaction could not be committed and was aborted.",
    BSA_RC_INVALID_DATABLOCK: "The BSA_DataBlock32 values are inconsistent.",
    BSA_RC_VERSION_NOT_SUPPORTED: "The requested BSA_API_VERSION is not supported.",
    BSA_RC_ACCESS_FAILURE: "The requested object cannot be accessed.",
    BSA_RC_BUFFER_TOO_SMALL: "The supplied buffer is smaller than the data.",
    BSA_RC_INVALID_COPYID: "The copyId is not a valid object copy ID.",
    BSA_RC_INVALID_ENV: "An environment entry is invalid.",
    BSA_RC_INVALID_OBJECTDESCRIPTOR: "The object descriptor is invalid.",
    BSA_RC_INVALID_QUERYDESCRIPTOR: "The query descriptor is invalid.",
    BSA_RC_NULL_ARGUMENT: "A required argument was NULL (None).",
    NBBSA_RC_FEATURE_NOT_LICENSED: "The requested feature is not licensed on this server.",
}
