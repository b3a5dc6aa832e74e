"""`python -m automap`."""

from .cli import entrypoint

entrypoint()
