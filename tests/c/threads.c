/* Threads of one process sharing the library. C425 allows one session per address space,
 * so threads take turns: each calls BSAInit until the session is free (the others must be
 * told BSA_RC_INVALID_CALL_SEQUENCE, never get a second session), then backs up its own
 * object in blocks of its own size, finds it by a query, restores it with another block
 * size, checks every byte and terminates, handing the session on.
 *     threads SERVICE NTHREADS  -> "ok N REFUSED" (BSAInit calls refused), or the failure */
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xbsa.h"
#include "nbbsa.h"

struct job { int index; const char *service; char error[256]; };

static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static int open_sessions, most_open, refused;

static void count(int delta) {
    pthread_mutex_lock(&count_lock);
    open_sessions += delta;
    if (open_sessions > most_open) most_open = open_sessions;
    pthread_mutex_unlock(&count_lock);
}

static unsigned char pattern(int index, size_t at) {
    return (unsigned char)((at * 2654435761u + (size_t)index * 40503u) >> 13);
}

/* Records the failed call with the library's detail (BSAGetLastError). */
static void fail(struct job *job, const char *call, int rc) {
    char detail[512];
    BSA_UInt32 size = sizeof detail;
    if (BSAGetLastError(&size, detail) != BSA_RC_SUCCESS) detail[0] = '\0';
    snprintf(job->error, sizeof job->error, "thread %d: %s returned %d (%s)", job->index, call,
             rc, detail);
}

static void *run(void *arg) {
    struct job *job = arg;
    BSA_Handle h = 0;
    BSA_ObjectOwner owner;
    BSA_ObjectDescriptor desc, found;
    BSA_QueryDescriptor query;
    BSA_DataBlock32 block;
    char host[1100], *env[3];
    size_t size = ((size_t)job->index + 1) << 20, send_bs = 4096u * (size_t)(job->index + 3);
    size_t get_bs = 65536u + (size_t)job->index * 1000u, at, got = 0;
    unsigned char *buf = malloc(send_bs > get_bs ? send_bs : get_bs);
    int rc;
#define CHECK(call, want) do { if ((rc = (call)) != (want)) { \
        fail(job, #call, rc); goto out; } } while (0)
    if (!buf) { snprintf(job->error, sizeof job->error, "malloc"); return NULL; }
    memset(&owner, 0, sizeof owner);
    strcpy(owner.bsa_ObjectOwner, "threads");
    snprintf(host, sizeof host, "BSA_SERVICE_HOST=%s", job->service);
    env[0] = "BSA_API_VERSION=1.1.0";
    env[1] = host;
    env[2] = NULL;
    for (;;) {                          /* wait for the process's one session */
        struct timespec pause = {0, 2000000};
        rc = BSAInit(&h, NULL, &owner, env);
        if (rc == BSA_RC_SUCCESS) break;
        if (rc != BSA_RC_INVALID_CALL_SEQUENCE) {
            snprintf(job->error, sizeof job->error, "thread %d: BSAInit returned %d",
                     job->index, rc);
            free(buf);
            return NULL;
        }
        pthread_mutex_lock(&count_lock);
        refused++;
        pthread_mutex_unlock(&count_lock);
        nanosleep(&pause, NULL);
    }
    count(1);

    memset(&desc, 0, sizeof desc);
    strcpy(desc.objectOwner.bsa_ObjectOwner, "threads");
    strcpy(desc.objectName.objectSpaceName, "/threads");
    snprintf(desc.objectName.pathName, sizeof desc.objectName.pathName, "/stream%d", job->index);
    strcpy(desc.resourceType, "Stream");
    desc.copyType = BSA_CopyType_BACKUP;
    desc.objectType = BSA_ObjectType_FILE;
    desc.estimatedSize.right = (BSA_UInt32)size;
    memset(&block, 0, sizeof block);
    CHECK(BSABeginTxn(h), BSA_RC_SUCCESS);
    CHECK(BSACreateObject(h, &desc, &block), BSA_RC_SUCCESS);
    for (at = 0; at < size;) {
        size_t n = size - at < send_bs ? size - at : send_bs, i;
        for (i = 0; i < n; i++) buf[i] = pattern(job->index, at + i);
        block.bufferLen = (BSA_UInt32)send_bs;
        block.numBytes = (BSA_UInt32)n;
        block.bufferPtr = buf;
        CHECK(BSASendData(h, &block), BSA_RC_SUCCESS);
        at += n;
    }
    CHECK(BSAEndData(h), BSA_RC_SUCCESS);
    CHECK(BSAEndTxn(h, BSA_Vote_COMMIT), BSA_RC_SUCCESS);

    memset(&query, 0, sizeof query);
    strcpy(query.objectOwner.bsa_ObjectOwner, "threads");
    query.objectName = desc.objectName;
    query.copyType = BSA_CopyType_BACKUP;
    query.objectType = BSA_ObjectType_ANY;
    query.objectStatus = BSA_ObjectStatus_MOST_RECENT;
    CHECK(BSABeginTxn(h), BSA_RC_SUCCESS);
    CHECK(BSAQueryObject(h, &query, &found), BSA_RC_SUCCESS);
    if (found.copyId.left != desc.copyId.left || found.copyId.right != desc.copyId.right) {
        snprintf(job->error, sizeof job->error, "thread %d: the query found another copy",
                 job->index);
        goto out;
    }
    memset(&block, 0, sizeof block);
    CHECK(BSAGetObject(h, &found, &block), BSA_RC_SUCCESS);
    for (;;) {
        size_t i;
        block.bufferLen = (BSA_UInt32)get_bs;
        block.bufferPtr = buf;
        rc = BSAGetData(h, &block);
        if (rc != BSA_RC_SUCCESS && rc != BSA_RC_NO_MORE_DATA) {
            snprintf(job->error, sizeof job->error, "thread %d: BSAGetData returned %d",
                     job->index, rc);
            goto out;
        }
        for (i = 0; i < block.numBytes; i++)
            if (got + i >= size || buf[i] != pattern(job->index, got + i)) {
                snprintf(job->error, sizeof job->error, "thread %d: byte %zu differs",
                         job->index, got + i);
                goto out;
            }
        got += block.numBytes;
        if (rc == BSA_RC_NO_MORE_DATA) break;
    }
    if (got != size) {
        snprintf(job->error, sizeof job->error, "thread %d: %zu of %zu bytes", job->index, got,
                 size);
        goto out;
    }
    CHECK(BSAEndData(h), BSA_RC_SUCCESS);
    CHECK(BSAEndTxn(h, BSA_Vote_COMMIT), BSA_RC_SUCCESS);
    count(-1);
    CHECK(BSATerminate(h), BSA_RC_SUCCESS);
    h = 0;
out:
    if (h) {
        count(-1);
        BSATerminate(h);
    }
    free(buf);
    return NULL;
#undef CHECK
}

int main(int argc, char **argv) {
    int n, i, failed = 0;
    struct job *jobs;
    pthread_t *tids;
    if (argc != 3 || (n = atoi(argv[2])) < 1) {
        fprintf(stderr, "usage: %s SERVICE NTHREADS\n", argv[0]);
        return 2;
    }
    jobs = calloc((size_t)n, sizeof *jobs);
    tids = calloc((size_t)n, sizeof *tids);
    if (!jobs || !tids) return 1;
    for (i = 0; i < n; i++) {
        jobs[i].index = i;
        jobs[i].service = argv[1];
        if (pthread_create(&tids[i], NULL, run, &jobs[i]) != 0) return 1;
    }
    for (i = 0; i < n; i++) pthread_join(tids[i], NULL);
    for (i = 0; i < n; i++)
        if (jobs[i].error[0]) {
            fprintf(stderr, "%s\n", jobs[i].error);
            failed = 1;
        }
    if (most_open != 1) {
        fprintf(stderr, "%d sessions were open at once\n", most_open);
        failed = 1;
    }
    if (!failed) printf("ok %d %d\n", n, refused);
    free(jobs);
    free(tids);
    return failed;
}
