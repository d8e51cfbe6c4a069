/* An agent with a fast interval timer (progress reports, watchdogs): SIGALRM every 0.5 ms,
 * its handler installed without SA_RESTART, so the library's socket calls keep being
 * interrupted (EINTR) while a 64 MiB object is backed up and restored.
 *     signals SERVICE  -> "ok BYTES bytes, N signals"; exit 1 on a failed call or a wrong
 * byte */
#include <signal.h>
#include <sys/time.h>
#include "../../examples/c/common.h"     /* sample_init, sample_fail */

#define CHECK(call) do { int rc_ = (call); \
        if (rc_ != BSA_RC_SUCCESS) sample_fail(#call, rc_, 0, 0); } while (0)

#define BLOCK (1u << 20)
#define TOTAL (64u << 20)

static volatile sig_atomic_t ticks;

static void tick(int sig) {
    (void)sig;
    ticks++;
}

static unsigned char pattern(size_t at) {
    return (unsigned char)(at * 31 >> 7);
}

int main(int argc, char **argv) {
    BSA_ObjectDescriptor desc;
    BSA_DataBlock32 block;
    BSA_Handle h;
    struct sigaction sa;
    struct itimerval every = {{0, 500}, {0, 500}};
    unsigned char *buf = malloc(BLOCK);
    size_t at, got = 0, i;
    int rc;
    if (argc != 2) {
        fprintf(stderr, "usage: %s SERVICE\n", argv[0]);
        return 2;
    }
    if (!buf) return 1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tick;                 /* no SA_RESTART: calls see EINTR */
    sigaction(SIGALRM, &sa, NULL);
    setitimer(ITIMER_REAL, &every, NULL);

    h = sample_init(argv[1]);
    CHECK(BSABeginTxn(h));
    memset(&desc, 0, sizeof desc);
    strcpy(desc.objectName.pathName, "/sig");
    strcpy(desc.resourceType, "Stream");
    desc.copyType = BSA_CopyType_BACKUP;
    desc.objectType = BSA_ObjectType_FILE;
    desc.estimatedSize.right = TOTAL;
    memset(&block, 0, sizeof block);
    CHECK(BSACreateObject(h, &desc, &block));
    for (at = 0; at < TOTAL; at += BLOCK) {
        for (i = 0; i < BLOCK; i++) buf[i] = pattern(at + i);
        block.bufferLen = block.numBytes = BLOCK;
        block.bufferPtr = buf;
        CHECK(BSASendData(h, &block));
    }
    CHECK(BSAEndData(h));
    CHECK(BSAEndTxn(h, BSA_Vote_COMMIT));

    CHECK(BSABeginTxn(h));
    memset(&block, 0, sizeof block);
    CHECK(BSAGetObject(h, &desc, &block));
    for (;;) {
        block.bufferLen = BLOCK;
        block.bufferPtr = buf;
        rc = BSAGetData(h, &block);
        if (rc != BSA_RC_SUCCESS && rc != BSA_RC_NO_MORE_DATA) sample_fail("BSAGetData", rc, 0, 0);
        for (i = 0; i < block.numBytes; i++)
            if (buf[i] != pattern(got + i)) {
                fprintf(stderr, "byte %zu differs\n", got + i);
                return 1;
            }
        got += block.numBytes;
        if (rc == BSA_RC_NO_MORE_DATA) break;
    }
    CHECK(BSAEndData(h));
    CHECK(BSAEndTxn(h, BSA_Vote_COMMIT));
    CHECK(BSATerminate(h));
    free(buf);
    printf("ok %zu bytes, %d signals\n", got, (int)ticks);
    return got != TOTAL;
}
