"""The backup service: request handling (bprd), jobs (nbjm) and the server process."""
