/* Restore the newest copy of PATH (or COPYID) to standard output:
 *   xbsa_restore PATH [BLOCKSIZE [SERVICE [COPYID]]] > data */
#include "common.h"
#include <unistd.h>

int main(int argc, char **argv) {
    BSA_QueryDescriptor query;
    BSA_ObjectDescriptor desc;
    BSA_DataBlock32 block;
    BSA_Handle h;
    size_t bs = 1 << 20;
    unsigned long long total = 0;
    char *buf;
    int rc;
    if (argc < 2) { fprintf(stderr, "usage: %s PATH [BLOCKSIZE [SERVICE [COPYID]]]\n", argv[0]); return 2; }
    if (argc > 2) bs = (size_t)strtoul(argv[2], NULL, 10);
    h = sample_init(argc > 3 ? argv[3] : NULL);
    if ((rc = BSABeginTxn(h)) != BSA_RC_SUCCESS) sample_fail("BSABeginTxn", rc, h, 0);
    memset(&desc, 0, sizeof desc);
    if (argc > 4) {
        desc.copyId = sample_to_u64(strtoull(argv[4], NULL, 10));
    } else {
        sample_query(&query, argv[1], BSA_ObjectStatus_MOST_RECENT);
        query.copyType = BSA_CopyType_BACKUP;
        if ((rc = BSAQueryObject(h, &query, &desc)) != BSA_RC_SUCCESS) sample_fail("BSAQueryObject", rc, h, 1);
    }
    memset(&block, 0, sizeof block);
    if ((rc = BSAGetObject(h, &desc, &block)) != BSA_RC_SUCCESS) sample_fail("BSAGetObject", rc, h, 1);
    buf = malloc(bs);
    if (!buf) { perror("malloc"); return 1; }
    block.bufferLen = (BSA_UInt32)bs;
    block.bufferPtr = buf;
    while ((rc = BSAGetData(h, &block)) == BSA_RC_SUCCESS) {
        fwrite(buf + block.headerBytes, 1, block.numBytes, stdout);
        total += block.numBytes;
    }
    if (rc != BSA_RC_NO_MORE_DATA) sample_fail("BSAGetData", rc, h, 1);
    fwrite(buf + block.headerBytes, 1, block.numBytes, stdout);  /* the last bytes come with NO_MORE_DATA */
    total += block.numBytes;
    fflush(stdout);
    if ((rc = BSAEndData(h)) != BSA_RC_SUCCESS) sample_fail("BSAEndData", rc, h, 1);
    if ((rc = BSAEndTxn(h, BSA_Vote_COMMIT)) != BSA_RC_SUCCESS) sample_fail("BSAEndTxn", rc, h, 0);
    BSATerminate(h);
    free(buf);
    fprintf(stderr, "restored %llu bytes of copyId %llu\n", total, sample_u64(desc.copyId));
    return 0;
}
