"""OpenXBSA: the X/Open XBSA 1.1 backup API with NetBackup's extensions, and the service behind it."""

__version__ = "0.1.0"
