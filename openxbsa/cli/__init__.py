"""The ``openxbsa`` command: server, admin commands familiar to NetBackup users, tools."""
