/*
 * xbsa.h - X/Open Backup Services API (XBSA) 1.1, Open Group C425, as implemented by
 * OpenXBSA with NetBackup's XBSA 1.1.0 ABI: programs written for NetBackup's SDK compile
 * against this header and link -lxbsa64 unchanged.
 *
 * x86-64 Linux (LP64) layout: sizeof(BSA_ObjectDescriptor) == 2760,
 * sizeof(BSA_QueryDescriptor) == 2608, sizeof(BSA_DataBlock32) == 32.
 */
#ifndef XBSA_H
#define XBSA_H

#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- basic types */
typedef short          BSA_Int16;
typedef int            BSA_Int32;
typedef unsigned short BSA_UInt16;
typedef unsigned int   BSA_UInt32;
typedef struct { BSA_Int32 left; BSA_Int32 right; } BSA_Int64;      /* left: high 32 bits */
typedef struct { BSA_UInt32 left; BSA_UInt32 right; } BSA_UInt64;   /* left: high 32 bits */
typedef long           BSA_Handle;
typedef short          BSA_ShareId;
typedef char           BSA_SecurityToken;
typedef char           BSA_Boolean;

/* ---- sizes of character arrays (terminating NUL included) */
#define BSA_MAX_APPOBJECT_OWNER  64
#define BSA_MAX_BSAOBJECT_OWNER  64
#define BSA_MAX_DESCRIPTION      100
#define BSA_MAX_OBJECTSPACENAME  1024
#define BSA_MAX_OBJECTINFO       256
#define BSA_MAX_PATHNAME         1024
#define BSA_MAX_RESOURCETYPE     31
#define BSA_MAX_TOKEN_SIZE       64

#define BSA_ANY 1

/* ---- return codes */
#define BSA_RC_SUCCESS                  0x00
#define BSA_RC_ABORT_SYSTEM_ERROR       0x03
#define BSA_RC_AUTHENTICATION_FAILURE   0x04
#define BSA_RC_INVALID_CALL_SEQUENCE    0x05
#define BSA_RC_INVALID_HANDLE           0x06
#define BSA_RC_INVALID_VOTE             0x0B
#define BSA_RC_NO_MATCH                 0x11
#define BSA_RC_NO_MORE_DATA             0x12
#define BSA_RC_OBJECT_NOT_FOUND         0x1A
#define BSA_RC_TRANSACTION_ABORTED      0x20
#define BSA_RC_INVALID_DATABLOCK        0x34
#define BSA_RC_VERSION_NOT_SUPPORTED    0x4B
#define BSA_RC_ACCESS_FAILURE           0x4D
#define BSA_RC_BUFFER_TOO_SMALL         0x4E
#define BSA_RC_INVALID_COPYID           0x4F
#define BSA_RC_INVALID_ENV              0x50
#define BSA_RC_INVALID_OBJECTDESCRIPTOR 0x51
#define BSA_RC_INVALID_QUERYDESCRIPTOR  0x53
#define BSA_RC_NULL_ARGUMENT            0x55

/* ---- enumerations */
typedef enum {
    BSA_CopyType_ANY = 1, BSA_CopyType_ARCHIVE = 2, BSA_CopyType_BACKUP = 3
} BSA_CopyType;

typedef enum {
    BSA_ObjectStatus_ANY = 1, BSA_ObjectStatus_MOST_RECENT = 2,
    BSA_ObjectStatus_NOT_MOST_RECENT = 3
} BSA_ObjectStatus;

typedef enum {
    BSA_ObjectType_ANY = 1, BSA_ObjectType_FILE = 2, BSA_ObjectType_DIRECTORY = 3,
    BSA_ObjectType_OTHER = 4
} BSA_ObjectType;

typedef enum {
    BSA_Vote_COMMIT = 1, BSA_Vote_ABORT = 2, NBBSA_Vote_CONDITIONAL = 99
} BSA_Vote;

/* ---- structures */
typedef struct {
    BSA_UInt16 issue;
    BSA_UInt16 version;
    BSA_UInt16 level;
} BSA_ApiVersion;

typedef struct {
    char bsa_ObjectOwner[BSA_MAX_BSAOBJECT_OWNER];
    char app_ObjectOwner[BSA_MAX_APPOBJECT_OWNER];
} BSA_ObjectOwner;

typedef struct {
    char objectSpaceName[BSA_MAX_OBJECTSPACENAME];
    char pathName[BSA_MAX_PATHNAME];
} BSA_ObjectName;

typedef struct {
    BSA_UInt32       rsv1;
    BSA_ObjectOwner  objectOwner;
    BSA_ObjectName   objectName;
    struct tm        createTime;            /* UTC */
    BSA_CopyType     copyType;
    BSA_UInt64       copyId;
    BSA_UInt64       restoreOrder;
    char             rsv2[31];
    char             rsv3[31];
    BSA_UInt64       estimatedSize;
    char             resourceType[BSA_MAX_RESOURCETYPE];
    BSA_ObjectType   objectType;
    BSA_ObjectStatus objectStatus;
    char             rsv4[31];
    char             objectDescription[BSA_MAX_DESCRIPTION];
    unsigned char    objectInfo[BSA_MAX_OBJECTINFO];
} BSA_ObjectDescriptor;

typedef struct {
    BSA_ObjectOwner  objectOwner;
    BSA_ObjectName   objectName;
    struct tm        createTime_from;       /* UTC; all zero = no lower bound */
    struct tm        createTime_to;         /* UTC; all zero = no upper bound */
    struct tm        rsv1;
    struct tm        rsv2;
    BSA_CopyType     copyType;
    char             rsv3[31];
    char             rsv4[31];
    char             rsv5[31];
    BSA_ObjectType   objectType;
    BSA_ObjectStatus objectStatus;
    char             rsv6[100];
} BSA_QueryDescriptor;

typedef struct {
    BSA_UInt32  bufferLen;
    BSA_UInt32  numBytes;
    BSA_UInt32  headerBytes;
    BSA_ShareId shareId;
    BSA_UInt32  shareOffset;
    void       *bufferPtr;
} BSA_DataBlock32;

/* ---- the 16 calls */
int BSABeginTxn(BSA_Handle bsaHandle);
int BSACreateObject(BSA_Handle bsaHandle, BSA_ObjectDescriptor *objectDescriptorPtr,
                    BSA_DataBlock32 *dataBlockPtr);
int BSADeleteObject(BSA_Handle bsaHandle, BSA_UInt64 copyId);
int BSAEndData(BSA_Handle bsaHandle);
int BSAEndTxn(BSA_Handle bsaHandle, BSA_Vote vote);
int BSAGetData(BSA_Handle bsaHandle, BSA_DataBlock32 *dataBlockPtr);
/* environmentPtr: a NULL-terminated array of caller buffers, each at least 256 bytes */
int BSAGetEnvironment(BSA_Handle bsaHandle, BSA_ObjectOwner *objectOwnerPtr,
                      char **environmentPtr);
int BSAGetLastError(BSA_UInt32 *sizePtr, char *errorCodePtr);
int BSAGetNextQueryObject(BSA_Handle bsaHandle, BSA_ObjectDescriptor *objectDescriptorPtr);
int BSAGetObject(BSA_Handle bsaHandle, BSA_ObjectDescriptor *objectDescriptorPtr,
                 BSA_DataBlock32 *dataBlockPtr);
int BSAInit(BSA_Handle *bsaHandlePtr, BSA_SecurityToken *tokenPtr,
            BSA_ObjectOwner *objectOwnerPtr, char **environmentPtr);
int BSAQueryApiVersion(BSA_ApiVersion *apiVersionPtr);
int BSAQueryObject(BSA_Handle bsaHandle, BSA_QueryDescriptor *queryDescriptorPtr,
                   BSA_ObjectDescriptor *objectDescriptorPtr);
int BSAQueryServiceProvider(BSA_UInt32 *sizePtr, char *delimiter, char *providerPtr);
int BSASendData(BSA_Handle bsaHandle, BSA_DataBlock32 *dataBlockPtr);
int BSATerminate(BSA_Handle bsaHandle);

#ifdef __cplusplus
}
#endif

#endif /* XBSA_H */
