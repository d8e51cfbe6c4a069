/* A C agent that forks while its session is open, in the middle of sending an object (as
 * agents that start workers do): the child opens a session of its own and backs up an
 * object; the parent then finishes its object, commits it and reads it back. Each must be
 * intact — the child must send nothing on the parent's connection.
 *     forks SERVICE PATH  -> "ok", or the failing call; exit 1
 * With a third argument, "crash": the child only sleeps (it never calls the library) and
 * the parent dies at once, mid-object; the child prints its PID. The server must see the
 * parent's connection end although the child still holds a copy of it. */
#include <sys/wait.h>
#include <unistd.h>
#include "../../examples/c/common.h"     /* sample_init, sample_fail */

#define CHECK(call) do { int rc_ = (call); \
        if (rc_ != BSA_RC_SUCCESS) sample_fail(#call, rc_, 0, 0); } while (0)

static void create(BSA_Handle h, BSA_ObjectDescriptor *d, const char *path, unsigned size) {
    BSA_DataBlock32 block;
    memset(d, 0, sizeof *d);
    strcpy(d->objectOwner.bsa_ObjectOwner, "XBSA Client");   /* sample_init's owner */
    strcpy(d->objectOwner.app_ObjectOwner, "XBSA App");
    snprintf(d->objectName.pathName, sizeof d->objectName.pathName, "%s", path);
    strcpy(d->resourceType, "Stream");
    d->copyType = BSA_CopyType_BACKUP;
    d->objectType = BSA_ObjectType_FILE;
    d->estimatedSize.right = size;
    memset(&block, 0, sizeof block);
    CHECK(BSACreateObject(h, d, &block));
}

static void send_bytes(BSA_Handle h, char byte, unsigned n) {
    BSA_DataBlock32 block;
    char *buf = malloc(n);
    memset(buf, byte, n);
    memset(&block, 0, sizeof block);
    block.bufferLen = block.numBytes = n;
    block.bufferPtr = buf;
    CHECK(BSASendData(h, &block));
    free(buf);
}

int main(int argc, char **argv) {
    static char path[900], got[4096];
    BSA_ObjectDescriptor desc, child_desc;
    BSA_DataBlock32 block;
    BSA_Handle h, mine;
    unsigned total = 0, i;
    int status, rc;
    pid_t pid;
    if (argc != 3 && (argc != 4 || strcmp(argv[3], "crash") != 0)) {
        fprintf(stderr, "usage: %s SERVICE PATH [crash]\n", argv[0]);
        return 2;
    }
    h = sample_init(argv[1]);
    CHECK(BSABeginTxn(h));
    snprintf(path, sizeof path, "%s/parent", argv[2]);
    create(h, &desc, path, 2000);
    send_bytes(h, 'A', 1000);
    pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (argc == 4) {                  /* crash: a helper child lives on, the parent dies */
        if (pid == 0) {
            close(STDOUT_FILENO);     /* whoever reads the parent's output is not kept */
            close(STDERR_FILENO);
            sleep(60);
            _exit(0);
        }
        printf("%d\n", (int)pid);
        fflush(stdout);
        _exit(3);
    }
    if (pid == 0) {
        if (BSATerminate(h) != BSA_RC_INVALID_HANDLE) {     /* not the child's session */
            fprintf(stderr, "the child could end the parent's session\n");
            _exit(1);
        }
        mine = sample_init(argv[1]);
        CHECK(BSABeginTxn(mine));
        snprintf(path, sizeof path, "%s/child", argv[2]);
        create(mine, &child_desc, path, 500);
        send_bytes(mine, 'C', 500);
        CHECK(BSAEndData(mine));
        CHECK(BSAEndTxn(mine, BSA_Vote_COMMIT));
        CHECK(BSATerminate(mine));
        exit(0);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "the child failed\n");
        return 1;
    }
    send_bytes(h, 'B', 1000);
    CHECK(BSAEndData(h));
    CHECK(BSAEndTxn(h, BSA_Vote_COMMIT));
    CHECK(BSABeginTxn(h));
    memset(&block, 0, sizeof block);
    CHECK(BSAGetObject(h, &desc, &block));
    for (;;) {
        block.bufferLen = sizeof got - total;
        block.bufferPtr = got + total;
        rc = BSAGetData(h, &block);
        total += block.numBytes;
        if (rc == BSA_RC_NO_MORE_DATA) break;
        if (rc != BSA_RC_SUCCESS || total == sizeof got) {
            fprintf(stderr, "BSAGetData returned %d after %u bytes\n", rc, total);
            return 1;
        }
    }
    CHECK(BSAEndData(h));
    CHECK(BSAEndTxn(h, BSA_Vote_COMMIT));
    CHECK(BSATerminate(h));
    for (i = 0; i < total; i++)
        if (got[i] != (i < 1000 ? 'A' : 'B')) break;
    if (total != 2000 || i != total) {
        fprintf(stderr, "the parent's object came back as %u bytes, wrong from byte %u\n",
                total, i);
        return 1;
    }
    printf("ok\n");
    return 0;
}
