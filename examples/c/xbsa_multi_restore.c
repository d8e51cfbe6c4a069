/* Restore every object matching PATTERN in one job (NBBSAGetMultipleObjects), writing the
 * objects one after another to standard output:  xbsa_multi_restore PATTERN [SERVICE] */
#include "common.h"

#define MAXOBJ 100000

int main(int argc, char **argv) {
    static BSA_ObjectDescriptor found[MAXOBJ];
    BSA_QueryDescriptor query;
    BSA_DataBlock32 block;
    BSA_Handle h;
    char buf[65536];
    int rc, n = 0, i, job = 0;
    NBBSA_JOB_INFO *info = NULL;
    if (argc < 2) { fprintf(stderr, "usage: %s PATTERN [SERVICE]\n", argv[0]); return 2; }
    h = sample_init(argc > 2 ? argv[2] : NULL);
    if ((rc = BSABeginTxn(h)) != BSA_RC_SUCCESS) sample_fail("BSABeginTxn", rc, h, 0);
    sample_query(&query, argv[1], BSA_ObjectStatus_MOST_RECENT);
    rc = BSAQueryObject(h, &query, &found[0]);
    while (rc == BSA_RC_SUCCESS && n < MAXOBJ - 1) {
        n++;
        rc = BSAGetNextQueryObject(h, &found[n]);
    }
    if (rc != BSA_RC_NO_MORE_DATA && rc != BSA_RC_SUCCESS) sample_fail("BSAQueryObject", rc, h, 1);
    for (i = 0; i < n; i++)
        if ((rc = NBBSAAddToMultiObjectRestoreList(h, &found[i])) != BSA_RC_SUCCESS)
            sample_fail("NBBSAAddToMultiObjectRestoreList", rc, h, 1);
    if ((rc = NBBSAGetMultipleObjects(h)) != BSA_RC_SUCCESS) sample_fail("NBBSAGetMultipleObjects", rc, h, 1);
    NBBSAGetJobId(h, &job);
    for (i = 0; i < n; i++) {
        memset(&block, 0, sizeof block);
        if ((rc = BSAGetObject(h, &found[i], &block)) != BSA_RC_SUCCESS) sample_fail("BSAGetObject", rc, h, 1);
        block.bufferLen = sizeof buf;
        block.bufferPtr = buf;
        do {
            rc = BSAGetData(h, &block);
            if (rc != BSA_RC_SUCCESS && rc != BSA_RC_NO_MORE_DATA) sample_fail("BSAGetData", rc, h, 1);
            fwrite(buf + block.headerBytes, 1, block.numBytes, stdout);
        } while (rc == BSA_RC_SUCCESS);
        if ((rc = BSAEndData(h)) != BSA_RC_SUCCESS) sample_fail("BSAEndData", rc, h, 1);
    }
    fflush(stdout);
    if ((rc = NBBSAEndGetMultipleObjects(h)) != BSA_RC_SUCCESS) sample_fail("NBBSAEndGetMultipleObjects", rc, h, 1);
    if ((rc = BSAEndTxn(h, BSA_Vote_COMMIT)) != BSA_RC_SUCCESS) sample_fail("BSAEndTxn", rc, h, 0);
    if (NBBSAGetJobInfo(h, &info) == BSA_RC_SUCCESS) {
        fprintf(stderr, "job %d status %d: %llu objects, %llu KB\n", info->jobId, info->jobStatus,
                sample_u64(info->numObjects), sample_u64(info->kiloBytes));
        NBBSAFreeJobInfo(info);
    }
    BSATerminate(h);
    fprintf(stderr, "restored %d object(s) in job %d\n", n, job);
    return 0;
}
