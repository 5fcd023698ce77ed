"""Artifacts: the files more than one process reads (datasets, checkpoints, final models), kept
in one store (a folder, or S3) and recorded with their sha256 in the database."""
