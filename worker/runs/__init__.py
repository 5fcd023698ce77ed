"""The worker's database work around the engine: claim, lease, per-epoch decide-and-write,
resume, hand-back, finish, the dataset lookup and the range test's writes. It calls the service's
repositories; the engine (`worker/engine/`) knows no database."""
