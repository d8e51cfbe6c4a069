/* Back up standard input as one object:  xbsa_backup PATH [BLOCKSIZE [SERVICE]] < data */
#include "common.h"

int main(int argc, char **argv) {
    BSA_ObjectDescriptor desc;
    BSA_DataBlock32 block;
    BSA_Handle h;
    size_t bs = 1 << 20, n;
    unsigned long long total = 0;
    char *buf;
    int rc;
    if (argc < 2) { fprintf(stderr, "usage: %s PATH [BLOCKSIZE [SERVICE]]\n", argv[0]); return 2; }
    if (argc > 2) bs = (size_t)strtoul(argv[2], NULL, 10);
    if (bs == 0) { fprintf(stderr, "bad block size\n"); return 2; }
    h = sample_init(argc > 3 ? argv[3] : NULL);
    if ((rc = BSABeginTxn(h)) != BSA_RC_SUCCESS) sample_fail("BSABeginTxn", rc, h, 0);
    memset(&desc, 0, sizeof desc);
    strcpy(desc.objectOwner.bsa_ObjectOwner, "XBSA Client");
    strcpy(desc.objectOwner.app_ObjectOwner, "XBSA App");
    strncpy(desc.objectName.pathName, argv[1], BSA_MAX_PATHNAME - 1);
    strcpy(desc.resourceType, "Stream");
    strcpy(desc.objectDescription, "backed up by the C sample");
    desc.copyType = BSA_CopyType_BACKUP;
    desc.objectType = BSA_ObjectType_FILE;
    desc.estimatedSize.left = 0;
    desc.estimatedSize.right = 100;          /* a stream's size is unknown: any estimate */
    memset(&block, 0, sizeof block);
    if ((rc = BSACreateObject(h, &desc, &block)) != BSA_RC_SUCCESS) sample_fail("BSACreateObject", rc, h, 1);
    buf = malloc(bs);
    if (!buf) { perror("malloc"); return 1; }
    while ((n = fread(buf, 1, bs, stdin)) > 0) {   /* fread fills the buffer: only the last is short */
        block.bufferLen = (BSA_UInt32)bs;
        block.bufferPtr = buf;
        block.numBytes = (BSA_UInt32)n;
        if ((rc = BSASendData(h, &block)) != BSA_RC_SUCCESS) sample_fail("BSASendData", rc, h, 1);
        total += n;
        if (n < bs) break;
    }
    if ((rc = BSAEndData(h)) != BSA_RC_SUCCESS) sample_fail("BSAEndData", rc, h, 1);
    if ((rc = BSAEndTxn(h, BSA_Vote_COMMIT)) != BSA_RC_SUCCESS) sample_fail("BSAEndTxn", rc, h, 0);
    BSATerminate(h);
    free(buf);
    printf("backed up %llu bytes as %s copyId %llu created %04d-%02d-%02d %02d:%02d:%02d UTC\n",
           total, argv[1], sample_u64(desc.copyId), desc.createTime.tm_year + 1900,
           desc.createTime.tm_mon + 1, desc.createTime.tm_mday, desc.createTime.tm_hour,
           desc.createTime.tm_min, desc.createTime.tm_sec);
    return 0;
}
