"""The client daemon (NetBackup's bpcd + bphdb): runs policy scripts from authorized locations."""
