"""NetBackup status codes the service produces: meaning and recommended action (bperror -S -r).

A leaf module: the server, the CLI and the XBSA library's NBBSAGetServerError share it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    code: int
    message: str
    action: str


_TABLE = [
    (0, "the requested operation was successfully completed", "None."),
    (1, "the requested operation was partially successful",
     "Read the job log (openxbsa jobs --log JOBID): the application voted CONDITIONAL or "
     "not every requested object was processed."),
    (2, "none of the requested files were backed up", "Read the job log for each object's error."),
    (5, "the restore failed to recover the requested files",
     "The application ended the restore before reading all data, or the data could not be "
     "read; read the job log and the server log."),
    (6, "the backup failed to back up the requested files",
     "The application aborted the transaction (BSAEndTxn ABORT, BSATerminate inside a "
     "transaction) or the commit failed; read the job log."),
    (12, "file open failed", "Check the storage unit's path and permissions."),
    (13, "file read failed", "Check the storage unit's disk and the server log."),
    (14, "file write failed", "Check free space and permissions of the storage unit."),
    (20, "invalid command parameter", "Check the command's arguments."),
    (25, "cannot connect on socket",
     "Is 'openxbsa server' running and listening on BSA_SERVICE_HOST?"),
    (40, "network connection broken",
     "The connection to the client broke during the job; check the network and the client."),
    (41, "network connection timed out", "Check the network between client and server."),
    (46, "server not allowed access", "The host is not allowed to use this server."),
    (50, "client process aborted",
     "The XBSA application exited or was killed during the job; nothing of the "
     "transaction was kept. Check the application's own log."),
    (84, "media write error",
     "The storage unit could not write; check the disk, free space and the server log."),
    (85, "media read error",
     "The storage unit could not read the object; run a verify of the image."),
    (129, "Disk storage unit is full", "Free space on the storage unit or expire images."),
    (130, "system error occurred",
     "For jobs marked after a restart: the server stopped while the job was active; nothing "
     "of it was kept. Otherwise read the server log."),
    (131, "client is not validated to use the server",
     "Over TCP the client host must present the secret issued by 'openxbsa secret issue'; "
     "check $OPENXBSA_SECRET_FILE or /etc/openxbsa/host.secret (mode 0600)."),
    (133, "invalid request", "The client sent a request the server does not accept; see the "
                             "server log and BSAGetLastError."),
    (135, "client is not validated to perform the requested operation",
     "Objects belong to the OS user and client host that created them."),
    (150, "termination requested by administrator", "None: the job was cancelled."),
    (159, "licensed use has been exceeded",
     "The feature (NBBSA_FEATURE_ID) is not enabled in the server's openxbsa.toml [features]."),
    (190, "found no images or media matching the selection criteria", "Check the criteria."),
    (196, "client backup was not attempted because backup window closed",
     "Widen the schedule's window or start earlier."),
    (197, "the specified schedule does not exist in the specified policy",
     "Check NBBSA_SCHEDULE against the policy's schedules."),
    (198, "no active policies contain schedules of the requested type for this client",
     "Create a DataStore policy with an Application Backup schedule, or fix NBBSA_POLICY."),
    (199, "operation not allowed during this time period",
     "The Application Backup schedule's window is closed now."),
    (219, "the required storage unit is unavailable", "Check the storage unit configuration."),
    (220, "database system error", "The catalog failed; read the server log."),
    (227, "no entity was found", "Nothing matched: check the names, owner and client host."),
    (230, "the specified policy does not exist in the configuration database",
     "Check NBBSA_POLICY."),
    (252, "An extended error status has been encountered, check detailed status",
     "Read the job log."),
]

STATUSES: dict[int, Status] = {code: Status(code, msg, act) for code, msg, act in _TABLE}


def describe(code: int) -> Status:
    """The entry for a status code; unknown codes get a generic one."""
    return STATUSES.get(code) or Status(code, f"status code {code}",
                                        "Read the job log and the server log.")


# What to check and do for each XBSA return code (the meaning is RC_TEXT in openxbsa.xbsa).
RC_ACTIONS: dict[int, str] = {
    0x00: "None.",
    0x03: "The service failed or the connection to it broke: NBBSAGetServerError gives the "
          "NetBackup status; read the job log (openxbsa jobs --log JOBID) and the server log "
          "(openxbsa logs --job JOBID). End the transaction with BSA_Vote_ABORT. From "
          "BSAEndTxn(COMMIT) it means the commit's outcome is not known (the service went "
          "down meanwhile): for a backup the message names the job, and status 0 or 1 in "
          "'openxbsa jobs --jobid JOBID' means it was kept; for deletions, query the objects.",
    0x04: "Over TCP the client host must present its secret: issue one with 'openxbsa secret "
          "issue HOST --out FILE' and keep it mode 0600 at /etc/openxbsa/host.secret or "
          "$OPENXBSA_SECRET_FILE.",
    0x05: "The call is not allowed in this state (reference state table): check the order of "
          "BSABeginTxn/BSAEndTxn, that each object ends with BSAEndData, and that one "
          "transaction does not mix backup, restore and delete. BSAGetLastError names the call.",
    0x06: "Use the handle BSAInit returned, before BSATerminate; one session per process.",
    0x0B: "Vote BSA_Vote_COMMIT, BSA_Vote_ABORT or NBBSA_Vote_CONDITIONAL.",
    0x11: "Nothing matched: check pathName and objectSpaceName (wildcards * and ?), the "
          "owner strings (an empty string matches only empty), copyType, objectType, "
          "objectStatus and the createTime range; objects are visible only to the OS user "
          "and client host that created them.",
    0x12: "Not an error: the end of the object's data (this buffer may still hold bytes) or "
          "of the query results.",
    0x1A: "The copyId does not exist, was deleted or expired, or belongs to another user or "
          "client host; query again to get current copy IDs.",
    0x20: "The commit failed and nothing of the transaction was kept: an object was still "
          "open, a storage write failed, or the connection broke before the commit took "
          "effect. Read the job log and back up again.",
    0x34: "Check the data block: bufferPtr set, headerBytes + numBytes <= bufferLen, every "
          "buffer full but the last, and for BSAGetData a writable buffer of bufferLen bytes.",
    0x4B: "Set BSA_API_VERSION=1.1.0 in the environment given to BSAInit.",
    0x4D: "The object exists but cannot be read now; retry, and verify the image.",
    0x4E: "Call again with the size returned in *sizePtr.",
    0x4F: "Copy IDs are non-zero values returned by BSACreateObject or a query.",
    0x50: "Each environment entry is KEY=value with no spaces around '='; BSA_API_VERSION "
          "is mandatory; BSA_SERVICE_HOST is unix:/path, HOST:PORT or HOST.",
    0x51: "Check the descriptor: pathName and resourceType not empty, copyType BACKUP or "
          "ARCHIVE, objectType FILE, DIRECTORY or OTHER, strings NUL-terminated within "
          "their arrays (BSA_MAX_*).",
    0x53: "Check the query: copyType, objectType and objectStatus must be set (ANY is 1), "
          "strings within BSA_MAX_*, times in UTC.",
    0x55: "Pass every required pointer (structures and output arguments).",
    0x1001: "Enable the feature in the server's openxbsa.toml ([features] enabled = [...]) "
            "or unset NBBSA_FEATURE_ID to use DataStore.",
}
