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
