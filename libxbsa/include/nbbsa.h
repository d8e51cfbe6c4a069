/*
 * nbbsa.h - NetBackup's XBSA extensions (the 15 NBBSA calls), as implemented by OpenXBSA.
 * Where NetBackup's prototypes were not public, docs/decisions.md records our choice.
 */
#ifndef NBBSA_H
#define NBBSA_H

#include "xbsa.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NBBSA_RC_FEATURE_NOT_LICENSED 0x1001

/* NBBSALogMsg message types */
#define NBBSA_MS_INFO    0
#define NBBSA_MS_WARNING 1
#define NBBSA_MS_ERROR   2
#ifndef MSINFO
#define MSINFO    NBBSA_MS_INFO
#define MSWARNING NBBSA_MS_WARNING
#define MSERROR   NBBSA_MS_ERROR
#endif

/* NBBSA_JOB_INFO.jobType and jobState: NetBackup's job codes */
#define NBBSA_JOB_BACKUP       0
#define NBBSA_JOB_RESTORE      2
#define NBBSA_JOB_IMAGE_DELETE 17
#define NBBSA_JOB_QUEUED       0
#define NBBSA_JOB_ACTIVE       1
#define NBBSA_JOB_DONE         3

typedef struct {
    int        jobId;
    int        jobType;
    int        jobState;
    int        jobStatus;           /* NetBackup status code once done */
    char       policyName[128];
    char       scheduleName[128];
    char       clientName[256];
    char       serverName[256];
    struct tm  startTime;           /* UTC */
    struct tm  endTime;             /* UTC; all zero while the job runs */
    BSA_UInt64 kiloBytes;
    BSA_UInt64 numObjects;
    char       backupId[320];
} NBBSA_JOB_INFO;

int NBBSAAddToMultiObjectRestoreList(BSA_Handle bsaHandle,
                                     BSA_ObjectDescriptor *objectDescriptorPtr);
int NBBSADeleteImage(BSA_Handle bsaHandle, BSA_UInt64 copyId);
int NBBSAEndGetMultipleObjects(BSA_Handle bsaHandle);
int NBBSAFreeJobInfo(NBBSA_JOB_INFO *jobInfoPtr);
int NBBSAGetEnv(BSA_Handle bsaHandle, char *envVariable, BSA_UInt32 *sizePtr, char *envValue);
int NBBSAGetErrorString(int errCode, BSA_UInt32 *sizePtr, char *errorString);
int NBBSAGetJobId(BSA_Handle bsaHandle, int *jobId);
int NBBSAGetJobInfo(BSA_Handle bsaHandle, NBBSA_JOB_INFO **jobInfoPtr);
int NBBSAGetMediaIds(BSA_Handle bsaHandle, BSA_UInt64 copyId, BSA_UInt32 *sizePtr,
                     char *MediaIdsPtr);
int NBBSAGetMultipleObjects(BSA_Handle bsaHandle);
int NBBSAGetServerError(BSA_Handle bsaHandle, int *ServerStatus, BSA_UInt32 *sizePtr,
                        char *ServerStatusStr);
int NBBSALogMsg(BSA_Handle bsaHandle, int msgType, char *message, char *source);
int NBBSASetEnv(BSA_Handle bsaHandle, char *EnvVar, char *EnvVal);
int NBBSAUpdateEnv(BSA_Handle bsaHandle, char **envPtr);
int NBBSAValidateFeatureId(BSA_Handle bsaHandle, char *featureId);

#ifdef __cplusplus
}
#endif

#endif /* NBBSA_H */
