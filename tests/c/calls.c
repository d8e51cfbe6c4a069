/* Every call's success and error paths through libxbsa64.so; prints "label rc" lines that
 * the Python test compares with the contract. Usage: calls SERVICE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xbsa.h"
#include "nbbsa.h"

#define SHOW(label, expr) do { int rc_ = (expr); printf("%s %d\n", label, rc_); fflush(stdout); } while (0)

static char env_version[] = "BSA_API_VERSION=1.1.0";
static char env_host[1100];
static char env_bad[] = "BSA_API_VERSION = 1.1.0";
static char env_v2[] = "BSA_API_VERSION=2.0.0";

static void fill(BSA_ObjectDescriptor *d, const char *path, unsigned size) {
    memset(d, 0, sizeof *d);
    strcpy(d->objectName.pathName, path);
    strcpy(d->resourceType, "C test");
    d->copyType = BSA_CopyType_BACKUP;
    d->objectType = BSA_ObjectType_FILE;
    d->estimatedSize.right = size;
}

int main(int argc, char **argv) {
    BSA_Handle h = 0, h2 = 0;
    BSA_ObjectOwner owner;
    BSA_ObjectDescriptor d, found;
    BSA_QueryDescriptor q;
    BSA_DataBlock32 b;
    BSA_ApiVersion v;
    BSA_UInt32 size;
    char *env[3], *bad[3], *v2[3], small[4], big[4096], delim, provider[256];
    char e0[256], e1[256], e2[256], e3[256], e4[256], e5[256], e6[256], e7[256];
    char *slots[9] = {e0, e1, e2, e3, e4, e5, e6, e7, NULL};
    char data[3000], back[1000];
    int job = 0, status = 0, i;
    NBBSA_JOB_INFO *info = NULL;
    BSA_UInt64 zero = {0, 0};
    unsigned long long copy;

    snprintf(env_host, sizeof env_host, "BSA_SERVICE_HOST=%s", argv[1]);
    env[0] = env_version; env[1] = env_host; env[2] = NULL;
    bad[0] = env_bad; bad[1] = env_host; bad[2] = NULL;
    v2[0] = env_v2; v2[1] = env_host; v2[2] = NULL;
    memset(&owner, 0, sizeof owner);
    for (i = 0; i < (int)sizeof data; i++) data[i] = (char)(i * 7);

    SHOW("QueryApiVersion", BSAQueryApiVersion(&v));
    printf("version %d.%d.%d\n", v.issue, v.version, v.level);
    SHOW("QueryApiVersion.null", BSAQueryApiVersion(NULL));
    size = 2;
    SHOW("QueryServiceProvider.small", BSAQueryServiceProvider(&size, &delim, small));
    printf("provider.needed %u\n", size);
    size = sizeof provider;
    SHOW("QueryServiceProvider", BSAQueryServiceProvider(&size, &delim, provider));
    printf("provider %s delimiter %c size %u\n", provider, delim, size);
    SHOW("QueryServiceProvider.null", BSAQueryServiceProvider(NULL, &delim, provider));

    SHOW("Init.null_handle", BSAInit(NULL, NULL, &owner, env));
    SHOW("Init.null_owner", BSAInit(&h, NULL, NULL, env));
    SHOW("Init.null_env", BSAInit(&h, NULL, &owner, NULL));
    SHOW("Init.bad_env", BSAInit(&h, NULL, &owner, bad));
    SHOW("Init.version", BSAInit(&h, NULL, &owner, v2));
    size = 0;
    SHOW("GetLastError.size_query", BSAGetLastError(&size, NULL));
    printf("lasterror.size_nonzero %d\n", size > 1);
    size = sizeof big;
    SHOW("GetLastError", BSAGetLastError(&size, big));
    printf("lasterror.terminated %d\n", (int)strlen(big) + 1 == (int)size);
    SHOW("GetLastError.null", BSAGetLastError(NULL, big));
    /* NetBackup ignores the security token and never reads it: an agent's pointer that
     * leads nowhere must not crash the library */
    SHOW("Init.unread_token", BSAInit(&h, (BSA_SecurityToken *)8, &owner, env));
    SHOW("Terminate.unread_token", BSATerminate(h));
    SHOW("Init", BSAInit(&h, NULL, &owner, env));
    SHOW("Init.second", BSAInit(&h2, NULL, &owner, env));
    SHOW("GetEnvironment", BSAGetEnvironment(h, &owner, slots));
    printf("env0 %s\n", e0);
    SHOW("GetEnvironment.null", BSAGetEnvironment(h, NULL, slots));
    slots[2] = NULL;                      /* two buffers for more entries: filled, and told */
    e1[0] = 0;
    SHOW("GetEnvironment.short", BSAGetEnvironment(h, &owner, slots));
    printf("env1.filled %d\n", strchr(e1, '=') != NULL);
    slots[2] = e2;
    SHOW("BeginTxn.bad_handle", BSABeginTxn(h + 99));
    SHOW("EndTxn.no_txn", BSAEndTxn(h, BSA_Vote_COMMIT));
    SHOW("CreateObject.no_txn", BSACreateObject(h, &d, &b));

    /* backup */
    SHOW("BeginTxn", BSABeginTxn(h));
    SHOW("BeginTxn.nested", BSABeginTxn(h));
    SHOW("GetJobId.before_create", NBBSAGetJobId(h, &job));
    fill(&d, "/c/calls/one", sizeof data);
    memset(&b, 0, sizeof b);
    SHOW("CreateObject.null_desc", BSACreateObject(h, NULL, &b));
    SHOW("CreateObject.null_block", BSACreateObject(h, &d, NULL));
    d.copyType = BSA_CopyType_ANY;
    SHOW("CreateObject.bad_copytype", BSACreateObject(h, &d, &b));
    d.copyType = BSA_CopyType_BACKUP;
    memset(d.resourceType, 'x', sizeof d.resourceType);   /* not NUL-terminated */
    SHOW("CreateObject.unterminated", BSACreateObject(h, &d, &b));
    strcpy(d.resourceType, "C test");
    SHOW("CreateObject", BSACreateObject(h, &d, &b));
    printf("created.copyId_nonzero %d year_ok %d status %d headerBytes %u\n",
           d.copyId.left || d.copyId.right, d.createTime.tm_year >= 125, d.objectStatus, b.headerBytes);
    SHOW("GetJobId", NBBSAGetJobId(h, &job));
    SHOW("GetJobId.null", NBBSAGetJobId(h, NULL));
    SHOW("QueryObject.in_backup", BSAQueryObject(h, &q, &found));
    SHOW("SendData.null", BSASendData(h, NULL));
    b.bufferLen = 1000; b.bufferPtr = NULL; b.numBytes = 1000;
    SHOW("SendData.null_buffer", BSASendData(h, &b));
    b.bufferPtr = data; b.numBytes = 2000;
    SHOW("SendData.too_many_bytes", BSASendData(h, &b));
    for (i = 0; i < 3; i++) {
        b.bufferLen = 1000; b.bufferPtr = data + i * 1000; b.numBytes = 1000;
        SHOW("SendData", BSASendData(h, &b));
    }
    SHOW("EndData", BSAEndData(h));
    SHOW("SendData.after_end", BSASendData(h, &b));
    SHOW("LogMsg", NBBSALogMsg(h, MSERROR, "C test message", "Backup"));
    SHOW("EndTxn.bad_vote", BSAEndTxn(h, (BSA_Vote)7));
    SHOW("EndTxn", BSAEndTxn(h, BSA_Vote_COMMIT));
    SHOW("GetJobInfo", NBBSAGetJobInfo(h, &info));
    if (info) {
        printf("jobinfo.same %d status %d objects %u kb %u\n", info->jobId == job, info->jobStatus,
               info->numObjects.right, info->kiloBytes.right);
        SHOW("FreeJobInfo", NBBSAFreeJobInfo(info));
    }
    SHOW("FreeJobInfo.null", NBBSAFreeJobInfo(NULL));
    copy = ((unsigned long long)d.copyId.left << 32) | d.copyId.right;

    /* query + restore with small buffers and a header */
    SHOW("BeginTxn", BSABeginTxn(h));
    memset(&q, 0, sizeof q);
    strcpy(q.objectName.pathName, "/c/calls/*");
    q.copyType = BSA_CopyType_ANY; q.objectType = BSA_ObjectType_ANY;
    q.objectStatus = BSA_ObjectStatus_MOST_RECENT;
    SHOW("QueryObject.null", BSAQueryObject(h, NULL, &found));
    q.objectStatus = (BSA_ObjectStatus)0;
    SHOW("QueryObject.bad_status", BSAQueryObject(h, &q, &found));
    q.objectStatus = BSA_ObjectStatus_MOST_RECENT;
    q.createTime_from.tm_year = 90; q.createTime_from.tm_mday = 1;   /* 1990-01-01 */
    SHOW("QueryObject", BSAQueryObject(h, &q, &found));
    printf("found.same %d path %s size %u\n",
           (((unsigned long long)found.copyId.left << 32) | found.copyId.right) == copy,
           found.objectName.pathName, found.estimatedSize.right);
    SHOW("GetNextQueryObject.end", BSAGetNextQueryObject(h, &found));
    memset(&b, 0, sizeof b);
    SHOW("GetObject", BSAGetObject(h, &found, &b));
    memset(back, '#', sizeof back);
    b.bufferLen = 1000; b.headerBytes = 10; b.bufferPtr = back;
    {
        int rc, total = 0, ok = 1;
        do {
            rc = BSAGetData(h, &b);
            if (rc != BSA_RC_SUCCESS && rc != BSA_RC_NO_MORE_DATA) break;
            for (i = 0; i < (int)b.numBytes; i++) ok &= back[10 + i] == data[total + i];
            for (i = 0; i < 10; i++) ok &= back[i] == '#';   /* the header is untouched */
            total += b.numBytes;
        } while (rc == BSA_RC_SUCCESS);
        printf("restore.rc %d total %d exact %d\n", rc, total, ok);
    }
    SHOW("EndData", BSAEndData(h));
    SHOW("EndTxn", BSAEndTxn(h, BSA_Vote_COMMIT));

    /* media IDs */
    SHOW("BeginTxn", BSABeginTxn(h));
    size = 2;
    SHOW("GetMediaIds.small", NBBSAGetMediaIds(h, d.copyId, &size, small));
    printf("media.needed %u\n", size);
    size = sizeof big;
    SHOW("GetMediaIds", NBBSAGetMediaIds(h, d.copyId, &size, big));
    printf("media %s len %d size %u doublenul %d\n", big, (int)strlen(big), size,
           big[strlen(big)] == 0 && big[strlen(big) + 1] == 0);
    SHOW("EndTxn", BSAEndTxn(h, BSA_Vote_COMMIT));

    /* environment */
    SHOW("SetEnv", NBBSASetEnv(h, "NBBSA_KEYWORD", "from C"));
    size = sizeof big;
    SHOW("GetEnv", NBBSAGetEnv(h, "NBBSA_KEYWORD", &size, big));
    printf("getenv %s size %u\n", big, size);
    size = 3;
    SHOW("GetEnv.small", NBBSAGetEnv(h, "NBBSA_KEYWORD", &size, small));
    printf("getenv.needed %u\n", size);
    {
        char *upd[] = {"NBBSA_KEYWORD=updated", "NBBSA_OTHER=x", NULL};
        SHOW("UpdateEnv", NBBSAUpdateEnv(h, upd));
    }
    SHOW("UpdateEnv.null", NBBSAUpdateEnv(h, NULL));
    SHOW("ValidateFeatureId", NBBSAValidateFeatureId(h, "DataStore"));
    SHOW("ValidateFeatureId.unlicensed", NBBSAValidateFeatureId(h, "Nope"));
    size = sizeof big;
    SHOW("GetServerError", NBBSAGetServerError(h, &status, &size, big));
    printf("servererror.status %d\n", status);
    size = sizeof big;
    SHOW("GetErrorString", NBBSAGetErrorString(BSA_RC_NO_MATCH, &size, big));
    printf("errorstring %s\n", big);
    size = 1;
    SHOW("GetErrorString.small", NBBSAGetErrorString(BSA_RC_NO_MATCH, &size, small));
    printf("errorstring.needed %u\n", size);

    /* multi-object restore, delete, delete image */
    SHOW("BeginTxn", BSABeginTxn(h));
    SHOW("AddToMultiObjectRestoreList", NBBSAAddToMultiObjectRestoreList(h, &found));
    SHOW("AddToMultiObjectRestoreList.null", NBBSAAddToMultiObjectRestoreList(h, NULL));
    SHOW("GetMultipleObjects", NBBSAGetMultipleObjects(h));
    memset(&b, 0, sizeof b);
    SHOW("GetObject.multi", BSAGetObject(h, &found, &b));
    SHOW("EndData", BSAEndData(h));
    SHOW("EndGetMultipleObjects", NBBSAEndGetMultipleObjects(h));
    SHOW("EndTxn", BSAEndTxn(h, BSA_Vote_COMMIT));
    SHOW("BeginTxn", BSABeginTxn(h));
    SHOW("DeleteObject.zero", BSADeleteObject(h, zero));
    SHOW("DeleteImage", NBBSADeleteImage(h, d.copyId));
    SHOW("DeleteObject.gone", BSADeleteObject(h, d.copyId));
    SHOW("EndTxn", BSAEndTxn(h, BSA_Vote_COMMIT));
    SHOW("Terminate", BSATerminate(h));
    SHOW("Terminate.again", BSATerminate(h));
    return 0;
}
