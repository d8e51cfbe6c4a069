/* Prints the sizes and offsets of the XBSA structures as "name value" lines. */
#include <stdio.h>
#include <stddef.h>
#include "xbsa.h"
#include "nbbsa.h"

#define SZ(t) printf("sizeof(%s) %zu\n", #t, sizeof(t))
#define OFF(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(t, f))

int main(void) {
    SZ(BSA_ObjectDescriptor); SZ(BSA_QueryDescriptor); SZ(BSA_DataBlock32); SZ(BSA_ApiVersion);
    SZ(BSA_UInt64); SZ(BSA_ObjectOwner); SZ(BSA_ObjectName); SZ(struct tm); SZ(BSA_Handle);
    OFF(BSA_ObjectDescriptor, rsv1); OFF(BSA_ObjectDescriptor, objectOwner);
    OFF(BSA_ObjectDescriptor, objectName); OFF(BSA_ObjectDescriptor, createTime);
    OFF(BSA_ObjectDescriptor, copyType); OFF(BSA_ObjectDescriptor, copyId);
    OFF(BSA_ObjectDescriptor, restoreOrder); OFF(BSA_ObjectDescriptor, rsv2);
    OFF(BSA_ObjectDescriptor, rsv3); OFF(BSA_ObjectDescriptor, estimatedSize);
    OFF(BSA_ObjectDescriptor, resourceType); OFF(BSA_ObjectDescriptor, objectType);
    OFF(BSA_ObjectDescriptor, objectStatus); OFF(BSA_ObjectDescriptor, rsv4);
    OFF(BSA_ObjectDescriptor, objectDescription); OFF(BSA_ObjectDescriptor, objectInfo);
    OFF(BSA_QueryDescriptor, objectOwner); OFF(BSA_QueryDescriptor, objectName);
    OFF(BSA_QueryDescriptor, createTime_from); OFF(BSA_QueryDescriptor, createTime_to);
    OFF(BSA_QueryDescriptor, rsv1); OFF(BSA_QueryDescriptor, rsv2);
    OFF(BSA_QueryDescriptor, copyType); OFF(BSA_QueryDescriptor, rsv3);
    OFF(BSA_QueryDescriptor, rsv4); OFF(BSA_QueryDescriptor, rsv5);
    OFF(BSA_QueryDescriptor, objectType); OFF(BSA_QueryDescriptor, objectStatus);
    OFF(BSA_QueryDescriptor, rsv6);
    OFF(BSA_DataBlock32, bufferLen); OFF(BSA_DataBlock32, numBytes);
    OFF(BSA_DataBlock32, headerBytes); OFF(BSA_DataBlock32, shareId);
    OFF(BSA_DataBlock32, shareOffset); OFF(BSA_DataBlock32, bufferPtr);
    OFF(BSA_UInt64, left); OFF(BSA_UInt64, right);
    printf("sizeof(enum) %zu\n", sizeof(BSA_CopyType));
    printf("NBBSA_Vote_CONDITIONAL %d\n", (int)NBBSA_Vote_CONDITIONAL);
    printf("BSA_RC_BUFFER_TOO_SMALL %d\n", BSA_RC_BUFFER_TOO_SMALL);
    return 0;
}
