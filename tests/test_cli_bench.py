"""`automap bench`: checkpoints kept in a cache folder, MindSpore quiet, tables that fit a terminal with a legend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from automap import cli
from automap.cli.bench import default_cache

ROOT = Path(__file__).resolve().parents[1]


def test_checkpoints_go_to_the_users_cache_folder_by_default(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache() == tmp_path / "xdg" / "automap" / "bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache() == tmp_path / "home" / ".cache" / "automap" / "bench"
    assert cli.main(["bench", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: $XDG_CACHE_HOME/automap/bench, or ~/.cache/automap/bench" in help_text


@pytest.mark.slow
def test_a_run_writes_nothing_here_stays_quiet_and_fits_a_terminal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """As a person runs it: a fresh process (MindSpore's logger not quieted beforehand, as the tests' is)."""
    pytest.importorskip("torch")
    pytest.importorskip("mindspore")
    here = tmp_path / "here"
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GLOG_v"}
    env |= {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "automap", "bench", "--root", str(ROOT), "--pairs", "lstm_seq,conv1d_audio"]
    done = subprocess.run(command, cwd=here, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    out, err = done.stdout, done.stderr
    assert list(here.iterdir()) == []
    cached = sorted(p.name for p in (tmp_path / "cache" / "automap" / "bench").iterdir())
    assert cached == ["conv1d_audio-ci.ckpt", "conv1d_audio-ci.pth", "lstm_seq-ci.ckpt", "lstm_seq-ci.pth"]
    assert "deprecated" not in err, err
    assert max(len(line) for line in out.splitlines()) <= 100, out
    lines = out.splitlines()
    assert lines[1] == "32/32 right (100.0%); 0 wrong at or above the threshold; 0 wrong flagged below it; 0 unmatched"
    legend = out[out.index("Columns:") :]
    for column in ("params s/t", "wrong>=thr", "right>=thr", "exact-name", "order-only", "no lexicon", "mapping runs"):
        assert f"\n  {column} " in legend, column


def test_the_real_corpus_network_aware_says_why_it_cannot_run_without_the_third_party_packages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from benchmarks.realports.netaware import unavailable

    pytest.importorskip("torch")
    pytest.importorskip("mindspore")
    if not unavailable():
        pytest.skip("the third-party model packages are installed here: the corpus would run")
    env = dict(os.environ) | {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "automap", "bench", "--root", str(ROOT), "--real", "--network-aware"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NOT MEASURED" in done.stdout, done.stdout
    assert "benchmarks/realports/env.sh" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "cache").exists()  # nothing generated, nothing cached
