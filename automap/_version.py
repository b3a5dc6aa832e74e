"""The package version, on the floor so that any room can name it without importing the package."""

from __future__ import annotations

__version__ = "0.1.0"
