"""GET /metrics: Prometheus figures read from the database (the source of truth, the same in every
API process), the broker's queues, and this process's HTTP requests (docs/metrics.md)."""
