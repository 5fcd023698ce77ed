"""The worker registry: what each worker offers (devices, plugins, queues), as it reports it."""
