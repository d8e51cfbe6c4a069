/*
 * An agent that loads the library at run time, as many do: dlopen(RTLD_LOCAL) and dlsym
 * for each call, the program itself linked against neither libxbsa64 nor libpython.
 *
 *   dlopen LIB SERVICE roundtrip   back up 300,000 bytes, find them, restore, compare
 *   dlopen LIB SERVICE calls       print each call's return code, one per line, and the
 *                                  text of BSAGetLastError (a library that cannot start
 *                                  must say so, never BSA_RC_SUCCESS)
 *   dlopen LIB SERVICE endless     print "sending", then send 1 MiB buffers until a call
 *                                  fails (the test kills the server meanwhile); print that
 *                                  call's rc, the last error and the ending calls' rcs.
 *                                  SIGPIPE keeps its default action, as in most C programs
 *   dlopen LIB SERVICE process     print the LC_CTYPE locale after a session's start and
 *                                  end, and each signal whose disposition is no longer
 *                                  the default (a library must leave both to its host)
 */
#include <dlfcn.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xbsa.h"
#include "nbbsa.h"

#define CALL(name) __typeof__(name) *p_##name
CALL(BSAQueryApiVersion); CALL(BSAInit); CALL(BSABeginTxn); CALL(BSAEndTxn);
CALL(BSACreateObject); CALL(BSASendData); CALL(BSAEndData); CALL(BSAQueryObject);
CALL(BSAGetObject); CALL(BSAGetData); CALL(BSATerminate); CALL(BSAGetLastError);
CALL(NBBSAGetJobId);

static const char *names[] = {
    "BSAQueryApiVersion", "BSAQueryServiceProvider", "BSAInit", "BSATerminate",
    "BSAGetEnvironment", "BSAGetLastError", "BSABeginTxn", "BSAEndTxn", "BSACreateObject",
    "BSASendData", "BSAEndData", "BSAGetObject", "BSAGetData", "BSAQueryObject",
    "BSAGetNextQueryObject", "BSADeleteObject", "NBBSAAddToMultiObjectRestoreList",
    "NBBSADeleteImage", "NBBSAEndGetMultipleObjects", "NBBSAFreeJobInfo", "NBBSAGetEnv",
    "NBBSAGetErrorString", "NBBSAGetJobId", "NBBSAGetJobInfo", "NBBSAGetMediaIds",
    "NBBSAGetMultipleObjects", "NBBSAGetServerError", "NBBSALogMsg", "NBBSASetEnv",
    "NBBSAUpdateEnv", "NBBSAValidateFeatureId",
};

static void *need(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (p == NULL) {
        printf("missing %s\n", name);
        exit(2);
    }
    return p;
}

static void last_error(void) {
    char text[1024] = "";
    BSA_UInt32 size = 0;
    int rc = p_BSAGetLastError(&size, NULL);
    printf("lasterror.size_query %d\n", rc);
    size = sizeof text;
    rc = p_BSAGetLastError(&size, text);
    printf("lasterror %d %s\n", rc, text);
}

int main(int argc, char **argv) {
    static char env_host[600], data[300000], back[300000];
    char *env[] = {"BSA_API_VERSION=1.1.0", env_host, NULL};
    BSA_ObjectOwner owner;
    BSA_ObjectDescriptor d, found;
    BSA_QueryDescriptor q;
    BSA_DataBlock32 b;
    BSA_ApiVersion v;
    BSA_Handle h = 0;
    size_t got = 0, i;
    int rc, job = 0;
    void *lib;

    if (argc != 4)
        return 2;
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("dlopen %s\n", dlerror());
        return 2;
    }
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        need(lib, names[i]);
#define FIND(name) p_##name = (__typeof__(p_##name))need(lib, #name)
    FIND(BSAQueryApiVersion); FIND(BSAInit); FIND(BSABeginTxn); FIND(BSAEndTxn);
    FIND(BSACreateObject); FIND(BSASendData); FIND(BSAEndData); FIND(BSAQueryObject);
    FIND(BSAGetObject); FIND(BSAGetData); FIND(BSATerminate); FIND(BSAGetLastError);
    FIND(NBBSAGetJobId);
    snprintf(env_host, sizeof env_host, "BSA_SERVICE_HOST=%s", argv[2]);
    memset(&owner, 0, sizeof owner);

    if (strcmp(argv[3], "calls") == 0) {
        memset(&v, 0, sizeof v);
        printf("QueryApiVersion %d\n", p_BSAQueryApiVersion(&v));
        printf("Init %d\n", p_BSAInit(&h, NULL, &owner, env));
        printf("BeginTxn %d\n", p_BSABeginTxn(h));
        printf("GetJobId %d\n", p_NBBSAGetJobId(h, &job));
        printf("EndTxn %d\n", p_BSAEndTxn(h, BSA_Vote_COMMIT));
        printf("Terminate %d\n", p_BSATerminate(h));
        last_error();
        return 0;
    }

    if (strcmp(argv[3], "process") == 0) {
        struct sigaction sa;
        int sig;
        if ((rc = p_BSAInit(&h, NULL, &owner, env)) != 0 || (rc = p_BSATerminate(h)) != 0)
            return printf("init %d\n", rc), 1;
        printf("LC_CTYPE %s\n", setlocale(LC_CTYPE, NULL));
        for (sig = 1; sig < NSIG; sig++)
            if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL)
                printf("signal %d\n", sig);
        return 0;
    }

    if (strcmp(argv[3], "endless") == 0) {
        static char block[1 << 20];
        if ((rc = p_BSAInit(&h, NULL, &owner, env)) != 0)
            return printf("init %d\n", rc), 1;
        memset(&d, 0, sizeof d);
        strcpy(d.objectName.pathName, "/c/dlopen/endless");
        strcpy(d.resourceType, "dlopen agent");
        d.copyType = BSA_CopyType_BACKUP;
        d.objectType = BSA_ObjectType_FILE;
        d.estimatedSize.left = 1;
        memset(&b, 0, sizeof b);
        if (p_BSABeginTxn(h) || p_BSACreateObject(h, &d, &b))
            return printf("create\n"), 1;
        printf("sending\n");
        fflush(stdout);
        do {
            b.bufferLen = b.numBytes = sizeof block;
            b.headerBytes = 0;
            b.bufferPtr = block;
        } while ((rc = p_BSASendData(h, &b)) == BSA_RC_SUCCESS);
        printf("SendData %d\n", rc);
        last_error();
        printf("EndData %d\n", p_BSAEndData(h));
        printf("EndTxn %d\n", p_BSAEndTxn(h, BSA_Vote_COMMIT));
        printf("Terminate %d\n", p_BSATerminate(h));
        return 0;
    }

    if (p_BSAQueryApiVersion(&v) != 0 || v.issue != 1 || v.version != 1 || v.level != 0)
        return printf("version\n"), 1;
    if ((rc = p_BSAInit(&h, NULL, &owner, env)) != 0)
        return printf("init %d\n", rc), 1;
    for (i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 + i / 1000);
    memset(&d, 0, sizeof d);
    strcpy(d.objectName.pathName, "/c/dlopen/object");
    strcpy(d.resourceType, "dlopen agent");
    d.copyType = BSA_CopyType_BACKUP;
    d.objectType = BSA_ObjectType_FILE;
    d.estimatedSize.right = sizeof data;
    memset(&b, 0, sizeof b);
    if (p_BSABeginTxn(h) || p_BSACreateObject(h, &d, &b))
        return printf("create\n"), 1;
    for (i = 0; i < sizeof data; i += 65536) {
        b.bufferLen = 65536;
        b.numBytes = sizeof data - i < 65536 ? sizeof data - i : 65536;
        b.headerBytes = 0;
        b.bufferPtr = data + i;
        if ((rc = p_BSASendData(h, &b)) != 0)
            return printf("send %d\n", rc), 1;
    }
    if (p_BSAEndData(h) || p_BSAEndTxn(h, BSA_Vote_COMMIT))
        return printf("commit\n"), 1;

    memset(&q, 0, sizeof q);
    strcpy(q.objectName.pathName, "/c/dlopen/object");
    q.copyType = BSA_CopyType_ANY;
    q.objectType = BSA_ObjectType_ANY;
    q.objectStatus = BSA_ObjectStatus_MOST_RECENT;
    if (p_BSABeginTxn(h) || p_BSAQueryObject(h, &q, &found) || p_BSAEndTxn(h, BSA_Vote_COMMIT))
        return printf("query\n"), 1;
    if (found.copyId.left != d.copyId.left || found.copyId.right != d.copyId.right)
        return printf("found another copy\n"), 1;
    memset(&b, 0, sizeof b);
    if (p_BSABeginTxn(h) || p_BSAGetObject(h, &found, &b))
        return printf("get\n"), 1;
    do {
        b.bufferLen = 40000;
        b.headerBytes = 0;
        b.bufferPtr = back + got;
        if (got + b.bufferLen > sizeof back)
            b.bufferLen = sizeof back - got;
        rc = p_BSAGetData(h, &b);
        got += b.numBytes;
    } while (rc == BSA_RC_SUCCESS && got < sizeof back);
    if (rc != BSA_RC_NO_MORE_DATA || p_BSAEndData(h) || p_BSAEndTxn(h, BSA_Vote_COMMIT))
        return printf("restore %d\n", rc), 1;
    p_BSATerminate(h);
    printf("roundtrip %s %zu\n", memcmp(data, back, sizeof data) == 0 ? "ok" : "differs", got);
    return 0;
}
