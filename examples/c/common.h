/* Shared by the C sample programs: session set-up and error reporting, as agents do it. */
#ifndef SAMPLE_COMMON_H
#define SAMPLE_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xbsa.h"
#include "nbbsa.h"

static char sample_env_version[] = "BSA_API_VERSION=1.1.0";
static char sample_env_host[1100];

/* Prints the failure in NetBackup's words and the library's detail, then exits. */
static void sample_fail(const char *call, int rc, BSA_Handle h, int in_txn) {
    char text[512], detail[1024];
    BSA_UInt32 size = sizeof(text);
    if (NBBSAGetErrorString(rc, &size, text) != BSA_RC_SUCCESS) snprintf(text, sizeof text, "rc %d", rc);
    size = sizeof(detail);
    if (BSAGetLastError(&size, detail) != BSA_RC_SUCCESS || size == 0) detail[0] = '\0';
    fprintf(stderr, "%s failed: %s (%s)\n", call, text, detail);
    if (h) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s failed: %s", call, text);
        NBBSALogMsg(h, MSERROR, msg, "Sample");
        if (in_txn) BSAEndTxn(h, BSA_Vote_ABORT);
        BSATerminate(h);
    }
    exit(1);
}

/* Opens a session; service may be NULL for the default local server. */
static BSA_Handle sample_init(const char *service) {
    BSA_Handle h = 0;
    BSA_ObjectOwner owner;
    char *env[3];
    int n = 0, rc;
    memset(&owner, 0, sizeof owner);
    strcpy(owner.bsa_ObjectOwner, "XBSA Client");
    strcpy(owner.app_ObjectOwner, "XBSA App");
    env[n++] = sample_env_version;
    if (service && *service) {
        snprintf(sample_env_host, sizeof sample_env_host, "BSA_SERVICE_HOST=%s", service);
        env[n++] = sample_env_host;
    }
    env[n] = NULL;
    rc = BSAInit(&h, NULL, &owner, env);
    if (rc != BSA_RC_SUCCESS) sample_fail("BSAInit", rc, 0, 0);
    return h;
}

static inline unsigned long long sample_u64(BSA_UInt64 v) {
    return ((unsigned long long)v.left << 32) | v.right;
}

static inline BSA_UInt64 sample_to_u64(unsigned long long v) {
    BSA_UInt64 r;
    r.left = (BSA_UInt32)(v >> 32);
    r.right = (BSA_UInt32)(v & 0xffffffffu);
    return r;
}

/* A query descriptor for one owner-less name pattern, any copy, type and status. */
static inline void sample_query(BSA_QueryDescriptor *q, const char *pattern, BSA_ObjectStatus status) {
    memset(q, 0, sizeof *q);
    strcpy(q->objectOwner.bsa_ObjectOwner, "XBSA Client");
    strcpy(q->objectOwner.app_ObjectOwner, "XBSA App");
    strncpy(q->objectName.pathName, pattern, BSA_MAX_PATHNAME - 1);
    q->copyType = BSA_CopyType_ANY;
    q->objectType = BSA_ObjectType_ANY;
    q->objectStatus = status;
}
#endif
