"""openxbsa.xbsa: the X/Open XBSA 1.1 API with NetBackup's extensions, faithful to the C names.

    from openxbsa.xbsa import *
    rc, handle = BSAInit(None, BSA_ObjectOwner("me", ""), ["BSA_API_VERSION=1.1.0"])
"""

from openxbsa.xbsa._api import (
    BSABeginTxn, BSACreateObject, BSADeleteObject, BSAEndData, BSAEndTxn, BSAGetData,
    BSAGetEnvironment, BSAGetLastError, BSAGetNextQueryObject, BSAGetObject, BSAInit,
    BSAQueryApiVersion, BSAQueryObject, BSAQueryServiceProvider, BSASendData, BSATerminate,
)
from openxbsa.xbsa._constants import *  # noqa: F403 - the C constants, by design
from openxbsa.xbsa._constants import RC_NAMES, RC_TEXT
from openxbsa.xbsa._nbbsa import (
    NBBSAAddToMultiObjectRestoreList, NBBSADeleteImage, NBBSAEndGetMultipleObjects,
    NBBSAFreeJobInfo, NBBSAGetEnv, NBBSAGetErrorString, NBBSAGetJobId, NBBSAGetJobInfo,
    NBBSAGetMediaIds, NBBSAGetMultipleObjects, NBBSAGetServerError, NBBSALogMsg, NBBSASetEnv,
    NBBSAUpdateEnv, NBBSAValidateFeatureId,
)
from openxbsa.xbsa._structs import (
    BSA_ApiVersion, BSA_DataBlock32, BSA_ObjectDescriptor, BSA_ObjectName, BSA_ObjectOwner,
    BSA_QueryDescriptor, NBBSA_JobInfo,
)

CORE_CALLS = ("BSAQueryApiVersion", "BSAQueryServiceProvider", "BSAInit", "BSATerminate",
              "BSAGetEnvironment", "BSAGetLastError", "BSABeginTxn", "BSAEndTxn",
              "BSACreateObject", "BSASendData", "BSAEndData", "BSAGetObject", "BSAGetData",
              "BSAQueryObject", "BSAGetNextQueryObject", "BSADeleteObject")
NBBSA_CALLS = ("NBBSAAddToMultiObjectRestoreList", "NBBSADeleteImage",
               "NBBSAEndGetMultipleObjects", "NBBSAFreeJobInfo", "NBBSAGetEnv",
               "NBBSAGetErrorString", "NBBSAGetJobId", "NBBSAGetJobInfo", "NBBSAGetMediaIds",
               "NBBSAGetMultipleObjects", "NBBSAGetServerError", "NBBSALogMsg", "NBBSASetEnv",
               "NBBSAUpdateEnv", "NBBSAValidateFeatureId")

__all__ = [name for name in dir() if name.startswith(("BSA", "NBBSA", "MS"))] + [
    "RC_NAMES", "RC_TEXT", "CORE_CALLS", "NBBSA_CALLS"]
