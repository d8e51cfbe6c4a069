"""Data movement between a session's socket and a storage unit (NetBackup's bpdm/bptm role)."""
