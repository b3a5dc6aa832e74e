"""Run one `automap` command and write the seconds of its phases to a JSON file (the conversion benchmark's child).

    python -m benchmarks._phased PHASES.json convert model.pth --mapping m.json -o out.ckpt

The command runs exactly as `python -m automap ...` runs it; the phases are the ones `automap._phases` collects,
plus "command" (the whole command, from after the imports of this module to its exit status).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from automap._phases import collecting
from automap.cli import main


def run(argv: list[str]) -> int:
    target, command = Path(argv[0]), argv[1:]
    start = time.perf_counter()
    with collecting() as phases:
        status = main(command)
    seconds = dict(phases.seconds, command=time.perf_counter() - start)
    target.write_text(json.dumps(seconds, indent=1) + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
