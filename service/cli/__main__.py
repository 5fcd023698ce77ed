"""`python -m service.cli`: what the tests and the process supervisor start."""

from service.cli import app

app()
