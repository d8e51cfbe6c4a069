/* List the objects whose name matches PATTERN:  xbsa_query PATTERN [SERVICE] */
#include "common.h"

int main(int argc, char **argv) {
    BSA_QueryDescriptor query;
    BSA_ObjectDescriptor desc;
    BSA_Handle h;
    int rc, count = 0;
    h = sample_init(argc > 2 ? argv[2] : NULL);
    if ((rc = BSABeginTxn(h)) != BSA_RC_SUCCESS) sample_fail("BSABeginTxn", rc, h, 0);
    sample_query(&query, argc > 1 ? argv[1] : "/*", BSA_ObjectStatus_ANY);
    memset(&desc, 0, sizeof desc);
    rc = BSAQueryObject(h, &query, &desc);
    while (rc == BSA_RC_SUCCESS) {
        printf("%llu %c %04d-%02d-%02d %02d:%02d:%02d %llu %s\n", sample_u64(desc.copyId),
               desc.objectStatus == BSA_ObjectStatus_MOST_RECENT ? '*' : ' ',
               desc.createTime.tm_year + 1900, desc.createTime.tm_mon + 1, desc.createTime.tm_mday,
               desc.createTime.tm_hour, desc.createTime.tm_min, desc.createTime.tm_sec,
               sample_u64(desc.estimatedSize), desc.objectName.pathName);
        count++;
        rc = BSAGetNextQueryObject(h, &desc);
    }
    if (rc != BSA_RC_NO_MORE_DATA && rc != BSA_RC_NO_MATCH) sample_fail("BSAQueryObject", rc, h, 1);
    BSAEndTxn(h, BSA_Vote_COMMIT);
    BSATerminate(h);
    fprintf(stderr, "%d object(s)\n", count);
    return 0;
}
