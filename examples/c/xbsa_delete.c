/* Delete object copies:  xbsa_delete SERVICE COPYID... (SERVICE may be "") */
#include "common.h"

int main(int argc, char **argv) {
    BSA_Handle h;
    int rc, i;
    if (argc < 3) { fprintf(stderr, "usage: %s SERVICE COPYID...\n", argv[0]); return 2; }
    h = sample_init(argv[1]);
    if ((rc = BSABeginTxn(h)) != BSA_RC_SUCCESS) sample_fail("BSABeginTxn", rc, h, 0);
    for (i = 2; i < argc; i++) {
        rc = BSADeleteObject(h, sample_to_u64(strtoull(argv[i], NULL, 10)));
        if (rc != BSA_RC_SUCCESS) sample_fail("BSADeleteObject", rc, h, 1);
    }
    if ((rc = BSAEndTxn(h, BSA_Vote_COMMIT)) != BSA_RC_SUCCESS) sample_fail("BSAEndTxn", rc, h, 0);
    BSATerminate(h);
    printf("deleted %d object(s)\n", argc - 2);
    return 0;
}
