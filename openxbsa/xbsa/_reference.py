"""When each call returns each code: the single source of the guide's API reference.

The guide's reference pages are generated from this table, the functions' own docstrings
and signatures, and the C prototypes in libxbsa/include; a test fails when a call lacks
its entry here.
"""

from __future__ import annotations

S, NULL, IH, ICS = ("BSA_RC_SUCCESS", "BSA_RC_NULL_ARGUMENT", "BSA_RC_INVALID_HANDLE",
                    "BSA_RC_INVALID_CALL_SEQUENCE")
SYS = ("BSA_RC_ABORT_SYSTEM_ERROR", "the service failed or the connection to it broke")
SMALL = ("BSA_RC_BUFFER_TOO_SMALL", "the buffer is too small; *sizePtr (Python: the value) "
         "becomes the size needed, NULs included")
HANDLE = (IH, "the handle is not this process's open session")

RETURN_CODES: dict[str, list[tuple[str, str]]] = {
    "BSAQueryApiVersion": [(S, "always"), (NULL, "apiVersionPtr is NULL (C)")],
    "BSAQueryServiceProvider": [(S, "the delimiter and provider string are returned"), SMALL,
                                (NULL, "sizePtr or delimiter is NULL (C)")],
    "BSAInit": [(S, "the session is open; the handle is returned"),
                (NULL, "the owner or the environment is NULL"),
                (ICS, "a session is already open in this process"),
                ("BSA_RC_INVALID_ENV", "an entry is not KEY=value, BSA_API_VERSION is missing "
                 "or malformed, BSA_SERVICE_HOST or NBBSA_LOG_DIRECTORY is unusable"),
                ("BSA_RC_VERSION_NOT_SUPPORTED", "BSA_API_VERSION is not 1.1.x"),
                ("BSA_RC_AUTHENTICATION_FAILURE", "a TCP client host presented no valid secret"),
                SYS],
    "BSATerminate": [(S, "the session is closed; an open transaction was aborted"), HANDLE],
    "BSAGetEnvironment": [(S, "owner and KEY=value entries, with the values the service "
                              "filled in"), HANDLE, (NULL, "an output is NULL (C)")],
    "BSAGetLastError": [(S, "the words of the process's last failure ('' / size 0: none)"),
                        SMALL, (NULL, "sizePtr is NULL (C)")],
    "BSABeginTxn": [(S, "a transaction is open"), HANDLE,
                    (ICS, "a transaction is already open (they do not nest)"),
                    ("NBBSA_RC_FEATURE_NOT_LICENSED", "NBBSA_FEATURE_ID (default DataStore) is "
                     "not enabled on the server"), SYS],
    "BSAEndTxn": [(S, "committed (COMMIT, CONDITIONAL) or nullified (ABORT)"), HANDLE,
                  (ICS, "no transaction is open"),
                  ("BSA_RC_INVALID_VOTE", "the vote is not COMMIT, ABORT or CONDITIONAL"),
                  ("BSA_RC_TRANSACTION_ABORTED", "a commit was impossible (an object still open, "
                   "a storage failure, a connection lost before the commit took effect); "
                   "nothing was kept"),
                  (SYS[0], ("the service failed; or the connection broke while a commit "
                            "was under way and the service could not say how the backup's "
                            "job ended (it was down, or the job had not ended): the backup "
                            "may or may not be kept, and the message names the job to look "
                            "up"))],
    "BSACreateObject": [(S, "copyId, createTime, restoreOrder and objectStatus are filled in; "
                            "the data block says headerBytes 0 and a preferred bufferLen"),
                        HANDLE, (NULL, "the descriptor or the data block is NULL"),
                        (ICS, "not in a backup transaction, an object is open, or the "
                              "transaction already queried, restored or deleted"),
                        ("BSA_RC_INVALID_OBJECTDESCRIPTOR", "a mandatory field is empty, an enum "
                         "is ANY or unknown, a string is too long or unterminated"), SYS],
    "BSASendData": [(S, "the buffer's numBytes bytes after headerBytes are sent"), HANDLE,
                    (NULL, "the data block is NULL"),
                    (ICS, "no object is being created, or it was created with estimatedSize 0"),
                    ("BSA_RC_INVALID_DATABLOCK", "inconsistent lengths, no buffer, or a second "
                     "buffer that is not full"), SYS],
    "BSAEndData": [(S, "the object being created or read is closed"), HANDLE,
                   (ICS, "no object is open"), SYS],
    "BSAQueryObject": [(S, "the first match fills the descriptor"), HANDLE,
                       (NULL, "the query or the descriptor is NULL"),
                       (ICS, "in a backup transaction, or while an object is open"),
                       ("BSA_RC_INVALID_QUERYDESCRIPTOR", "an enum is unset or unknown, a "
                        "string too long, a time not UTC"),
                       ("BSA_RC_NO_MATCH", "nothing this user and client may see matches"), SYS],
    "BSAGetNextQueryObject": [(S, "the next match fills the descriptor"), HANDLE,
                              (NULL, "the descriptor is NULL"),
                              (ICS, "no query is active in this transaction"),
                              ("BSA_RC_NO_MORE_DATA", "the matches are exhausted"), SYS],
    "BSAGetObject": [(S, "the object's data can be read; the data block says headerBytes 0"),
                     HANDLE, (NULL, "the descriptor or the data block is NULL"),
                     (ICS, "not a restore transaction, an object is open, or out of a "
                           "multiple-object restore's list order"),
                     ("BSA_RC_INVALID_COPYID", "copyId is 0"),
                     ("BSA_RC_OBJECT_NOT_FOUND", "no such copy for this user and client"), SYS],
    "BSAGetData": [(S, "the buffer after headerBytes is full; numBytes is set"),
                   ("BSA_RC_NO_MORE_DATA", "the object's last bytes (numBytes may be 0)"),
                   HANDLE, (NULL, "the data block is NULL"),
                   (ICS, "no object is being read"),
                   ("BSA_RC_INVALID_DATABLOCK", "no writable buffer of bufferLen bytes, or no room "
                    "after headerBytes"), SYS],
    "BSADeleteObject": [(S, "the copy will be deleted at commit"), HANDLE,
                        (ICS, "not a delete transaction"),
                        ("BSA_RC_INVALID_COPYID", "copyId is 0"),
                        ("BSA_RC_OBJECT_NOT_FOUND", "no such copy for this user and client"), SYS],
    "NBBSAAddToMultiObjectRestoreList": [
        (S, "the descriptor's copyId is added to the list"), HANDLE,
        (NULL, "the descriptor is NULL"),
        (ICS, "not a restore transaction, or the list's restore already started"),
        ("BSA_RC_INVALID_COPYID", "copyId is 0")],
    "NBBSAGetMultipleObjects": [
        (S, "one restore job for the list has started; read the objects in list order"), HANDLE,
        (ICS, "the list is empty or already running, or not a restore transaction"),
        ("BSA_RC_OBJECT_NOT_FOUND", "a listed copy is not visible"), SYS],
    "NBBSAEndGetMultipleObjects": [
        (S, "the job ends (status 1 if objects were left unread)"), HANDLE,
        (ICS, "no multiple-object restore is active, or an object is still open"), SYS],
    "NBBSADeleteImage": [(S, "the whole image holding copyId is deleted now"), HANDLE,
                         (ICS, "not a delete transaction"),
                         ("BSA_RC_INVALID_COPYID", "copyId is 0"),
                         ("BSA_RC_OBJECT_NOT_FOUND", "no such copy for this user and client"),
                         SYS],
    "NBBSAGetMediaIds": [(S, "the media IDs (at most six characters each) of copyId's image"),
                         SMALL, HANDLE,
                         (ICS, "not in a media-IDs transaction (only queries may precede)"),
                         ("BSA_RC_INVALID_COPYID", "copyId is 0"),
                         ("BSA_RC_OBJECT_NOT_FOUND", "no such copy for this user and client"),
                         (NULL, "sizePtr is NULL (C)"), SYS],
    "NBBSAGetJobId": [(S, "the job of the current backup or restore"), HANDLE,
                      (ICS, "outside the windows: backup after BSACreateObject, restore after "
                            "BSAGetObject or NBBSAGetMultipleObjects, until BSAEndTxn"),
                      (NULL, "jobId is NULL (C)")],
    "NBBSAGetJobInfo": [(S, "the job record (the transaction's job, or the session's last)"),
                        HANDLE, (ICS, "the session has had no job yet"),
                        (NULL, "jobInfoPtr is NULL (C)"), SYS],
    "NBBSAFreeJobInfo": [(S, "the record is released"), (NULL, "the record is NULL")],
    "NBBSAGetEnv": [(S, "the variable's value ('' when unset)"), SMALL, HANDLE,
                    (NULL, "the name or sizePtr is NULL"),
                    ("BSA_RC_INVALID_ENV", "the name is empty or has spaces or '='")],
    "NBBSASetEnv": [(S, "the variable is set"), HANDLE, (NULL, "the name or value is NULL"),
                    (ICS, "the variable may not change now (reference §8.3)"),
                    ("BSA_RC_INVALID_ENV", "malformed, or a value the service owns"), SYS],
    "NBBSAUpdateEnv": [(S, "every entry is set; the others keep their values"), HANDLE,
                       (NULL, "the list is NULL"),
                       (ICS, "a variable may not change now (reference §8.3)"),
                       ("BSA_RC_INVALID_ENV", "an entry is malformed (nothing is changed)"), SYS],
    "NBBSAGetErrorString": [(S, "the text of the code (unknown codes say so)"), SMALL,
                            (NULL, "sizePtr is NULL (C); the code is not an integer")],
    "NBBSAGetServerError": [(S, "the NetBackup status of the last server operation and its "
                                "text"), SMALL, HANDLE, (NULL, "an output is NULL (C)")],
    "NBBSALogMsg": [(S, "the message goes into the job's log"), HANDLE,
                    (NULL, "the message is NULL"),
                    ("BSA_RC_INVALID_ENV", "message or source is not text"), SYS],
    "NBBSAValidateFeatureId": [(S, "the feature is licensed"), HANDLE,
                               (NULL, "the feature ID is NULL"),
                               ("NBBSA_RC_FEATURE_NOT_LICENSED", "it is not"),
                               (ICS, "an object is being read"), SYS],
}

H = ("bsaHandle", "I", "the session's handle from BSAInit")
SIZE = ("sizePtr", "I/O", "in: the buffer's size in bytes; out: the size of the value, NULs "
        "included (Python: not passed; the optional size= plays its input part)")
COPY = ("copyId", "I", "the object copy's ID (BSA_UInt64 by value in C, an int in Python)")

# Every parameter of every C prototype, in order: (name, direction, meaning).
ARGUMENTS: dict[str, list[tuple[str, str, str]]] = {
    "BSAQueryApiVersion": [("apiVersionPtr", "O", "filled with issue 1, version 1, level 0 "
                                                  "(Python: returned)")],
    "BSAQueryServiceProvider": [SIZE, ("delimiter", "O", "the hierarchical-name delimiter, '/'"),
                                ("providerPtr", "O", "vendor/product/version of the service")],
    "BSAInit": [("bsaHandlePtr", "O", "the new session's handle (Python: returned)"),
                ("tokenPtr", "I", "security token; not used, may be NULL/None"),
                ("objectOwnerPtr", "I", "the session's BSA_ObjectOwner"),
                ("environmentPtr", "I", "NULL-terminated KEY=value strings (Python: a list); "
                                        "BSA_API_VERSION=1.1.0 is mandatory")],
    "BSATerminate": [H],
    "BSAGetEnvironment": [H, ("objectOwnerPtr", "O", "the session's owner (Python: returned)"),
                          ("environmentPtr", "O", "C: a NULL-terminated array of caller "
                                                  "buffers of 256 bytes, filled with KEY=value; "
                                                  "Python: returned as a list")],
    "BSAGetLastError": [SIZE, ("errorCodePtr", "O", "the words of the last failure "
                                                    "(Python: returned)")],
    "BSABeginTxn": [H],
    "BSAEndTxn": [H, ("vote", "I", "BSA_Vote_COMMIT, BSA_Vote_ABORT or NBBSA_Vote_CONDITIONAL")],
    "BSACreateObject": [H, ("objectDescriptorPtr", "I/O", "the new object's attributes; the "
                                                          "service fills copyId, createTime, "
                                                          "restoreOrder, objectStatus"),
                        ("dataBlockPtr", "O", "receives headerBytes and a preferred bufferLen")],
    "BSASendData": [H, ("dataBlockPtr", "I", "bufferPtr with numBytes of data after headerBytes; "
                                             "full unless it is the last")],
    "BSAEndData": [H],
    "BSAGetObject": [H, ("objectDescriptorPtr", "I", "only copyId is read"),
                     ("dataBlockPtr", "O", "receives headerBytes and a preferred bufferLen")],
    "BSAGetData": [H, ("dataBlockPtr", "I/O", "the application's buffer of bufferLen bytes; "
                                              "data lands after headerBytes, numBytes is set")],
    "BSAQueryObject": [H, ("queryDescriptorPtr", "I", "names with * and ?, owner, copy and "
                                                      "object type, status, createTime range"),
                       ("objectDescriptorPtr", "O", "the first match")],
    "BSAGetNextQueryObject": [H, ("objectDescriptorPtr", "O", "the next match")],
    "BSADeleteObject": [H, COPY],
    "NBBSAAddToMultiObjectRestoreList": [H, ("objectDescriptorPtr", "I", "the object to add "
                                                                        "(its copyId)")],
    "NBBSADeleteImage": [H, ("copyId", "I", "any object of the image to delete")],
    "NBBSAEndGetMultipleObjects": [H],
    "NBBSAFreeJobInfo": [("jobInfoPtr", "I", "the record NBBSAGetJobInfo returned")],
    "NBBSAGetEnv": [H, ("envVariable", "I", "the variable's name"), SIZE,
                    ("envValue", "O", "its value (Python: returned)")],
    "NBBSAGetErrorString": [("errCode", "I", "a BSA_RC_* or NBBSA_RC_* code"), SIZE,
                            ("errorString", "O", "the code's name and meaning "
                                                 "(Python: returned)")],
    "NBBSAGetJobId": [H, ("jobId", "O", "the job's ID (Python: returned)")],
    "NBBSAGetJobInfo": [H, ("jobInfoPtr", "O", "C: set to a record the library allocates; "
                                               "Python: an NBBSA_JobInfo returned")],
    "NBBSAGetMediaIds": [H, ("copyId", "I", "any object of the image"), SIZE,
                         ("MediaIdsPtr", "O", "C: M1\\0M2\\0\\0; Python: a list, returned")],
    "NBBSAGetMultipleObjects": [H],
    "NBBSAGetServerError": [H, ("ServerStatus", "O", "the NetBackup status code "
                                                     "(Python: returned)"), SIZE,
                            ("ServerStatusStr", "O", "its text (Python: returned)")],
    "NBBSALogMsg": [H, ("msgType", "I", "NBBSA_MS_INFO, NBBSA_MS_WARNING or NBBSA_MS_ERROR "
                                        "(MSINFO, MSWARNING, MSERROR)"),
                    ("message", "I", "the text"), ("source", "I", "who says it, e.g. Backup")],
    "NBBSASetEnv": [H, ("EnvVar", "I", "the variable's name"), ("EnvVal", "I", "its new value")],
    "NBBSAUpdateEnv": [H, ("envPtr", "I", "NULL-terminated KEY=value strings (Python: a list)")],
    "NBBSAValidateFeatureId": [H, ("featureId", "I", "the licence feature ID, e.g. DataStore")],
}
