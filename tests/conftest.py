"""Shared fixtures: MindSpore set up for running networks on the CPU, quietly."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ logging: errors only


@pytest.fixture
def mindspore_cpu():  # type: ignore[no-untyped-def]
    """MindSpore in PyNative mode on the CPU, as tests that run networks need."""
    mindspore = pytest.importorskip("mindspore")
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE, device_target="CPU")
    return mindspore
