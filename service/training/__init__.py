"""The pure training core that the API and the worker both import: the spec's shape and its torch
checks, the catalog of solvers and schedulers, schedule construction and walk, decisions, the
split, the LR range test's suggestion, hypergradient descent and the run-status vocabulary.

It imports torch, numpy and pydantic only: never SQLAlchemy, FastAPI, Starlette, Celery or Redis
(import-linter keeps this true, see `make lint`)."""
