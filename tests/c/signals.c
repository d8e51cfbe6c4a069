/* An agent with a fast interval timer (progress reports, watchdogs): SIGALRM every 0.5 ms,
 * its handler installed without SA_RESTART, so the library's socket calls keep being
 * interrupted (EINTR) while a 64 MiB object is backed up and restored.
 *     signals SERVICE  -> "ok BYTES bytes, N signals"; exit 1 on a failed call or a wrong
 * byte */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "xbsa.h"
#include "nbbsa.h"
static volatile sig_atomic_t ticks;
static void tick(int s) { (void)s; ticks++; }
#define CHECK(call) do { int rc_ = (call); if (rc_ != BSA_RC_SUCCESS) { char d[512]; BSA_UInt32 z = sizeof d; BSAGetLastError(&z, d); \
        fprintf(stderr, "%s returned %d: %s\n", #call, rc_, d); exit(1); } } while (0)
int main(int argc, char **argv) {
    static char host[1100]; char *env[3] = {"BSA_API_VERSION=1.1.0", host, NULL};
    BSA_Handle h; BSA_ObjectOwner owner; BSA_ObjectDescriptor d; BSA_DataBlock32 b;
    struct sigaction sa; struct itimerval it = {{0, 500}, {0, 500}};
    size_t bs = 1 << 20, total = 64u << 20, at, got = 0; unsigned char *buf = malloc(bs); int rc;
    if (argc != 2) { fprintf(stderr, "usage: %s SERVICE\n", argv[0]); return 2; }
    snprintf(host, sizeof host, "BSA_SERVICE_HOST=%s", argv[1]);
    memset(&sa, 0, sizeof sa); sa.sa_handler = tick;   /* no SA_RESTART: calls see EINTR */
    sigaction(SIGALRM, &sa, NULL); setitimer(ITIMER_REAL, &it, NULL);
    memset(&owner, 0, sizeof owner);
    CHECK(BSAInit(&h, NULL, &owner, env));
    CHECK(BSABeginTxn(h));
    memset(&d, 0, sizeof d); strcpy(d.objectName.pathName, "/sig"); strcpy(d.resourceType, "x");
    d.copyType = BSA_CopyType_BACKUP; d.objectType = BSA_ObjectType_FILE; d.estimatedSize.right = (BSA_UInt32)total;
    memset(&b, 0, sizeof b); CHECK(BSACreateObject(h, &d, &b));
    for (at = 0; at < total; at += bs) {
        size_t i; for (i = 0; i < bs; i++) buf[i] = (unsigned char)((at + i) * 31 >> 7);
        b.bufferLen = b.numBytes = (BSA_UInt32)bs; b.bufferPtr = buf; CHECK(BSASendData(h, &b));
    }
    CHECK(BSAEndData(h)); CHECK(BSAEndTxn(h, BSA_Vote_COMMIT));
    CHECK(BSABeginTxn(h)); memset(&b, 0, sizeof b); CHECK(BSAGetObject(h, &d, &b));
    for (;;) {
        size_t i; b.bufferLen = (BSA_UInt32)bs; b.bufferPtr = buf; rc = BSAGetData(h, &b);
        for (i = 0; i < b.numBytes; i++) if (buf[i] != (unsigned char)((got + i) * 31 >> 7)) { fprintf(stderr, "byte %zu\n", got + i); return 1; }
        got += b.numBytes; if (rc == BSA_RC_NO_MORE_DATA) break; if (rc) { fprintf(stderr, "getdata %d\n", rc); return 1; }
    }
    CHECK(BSAEndData(h)); CHECK(BSAEndTxn(h, BSA_Vote_COMMIT)); CHECK(BSATerminate(h));
    printf("ok %zu bytes, %d signals\n", got, (int)ticks); return got != total;
}
