#!/usr/bin/env bash
# Creates (or completes) the third-party environment the real-port corpus is generated in: model packages of both
# frameworks, at the versions the committed data was made with, plus automap itself.
#
# Usage: bash benchmarks/realports/env.sh [VENV_DIR]   (default: .venv-realports in the repository root)
# Then:  VENV_DIR/bin/python -m benchmarks.realports.generate   (from the repository root)
#
# Several of these packages pin old or conflicting versions of their own dependencies (mindformers pins
# tokenizers 0.15 and pyarrow 12, mindone pins transformers 4.57, mindocr pins shapely 1.8 and Pillow 9), so they are
# installed with --no-deps and the modules they really import are added by hand. Two package lines cannot share
# the main site-packages with the versions there, and get a folder of their own inside the environment that the
# generator puts first on sys.path for the pairs that need it (RealPair.site):
#   site-mindone/   transformers 4.57.1 + huggingface_hub 0.36 + diffusers 0.35.1 (what mindone 0.5.0 ports)
# Run-time workarounds (operator schemas torchvision expects, a module MindSpore removed, Ascend-only kernel
# checks, ...) live in benchmarks/realports/_setup.py, never in site-packages.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${1:-$REPO/.venv-realports}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q)
PINS=(torch==2.13.0 'numpy<2' 'pyarrow<18' huggingface_hub==2.4.0 transformers==5.24.0)

# frameworks and the packages whose own dependencies resolve cleanly
"${PIP[@]}" "${PINS[@]}" mindspore==2.10.0 safetensors==0.8.0 scipy networkx

# model packages, without their pinned dependencies
"${PIP[@]}" --no-deps torchvision==0.28.0 timm==1.0.31 open_clip_torch==3.3.0 ultralytics==8.3.40 \
    mindcv==0.3.0 mindformers==1.3.2 mindyolo==0.5.0 mindone==0.5.0

# what those packages import at run time
"${PIP[@]}" "${PINS[@]}" pyyaml tqdm requests jieba rouge_chinese nltk ftfy regex sentencepiece tiktoken \
    mindpet==1.0.4 opencv-python-headless==4.11.0.86 'setuptools<81' omegaconf datasets Deprecated tensorboardX \
    addict matplotlib pandas psutil py-cpuinfo polars

# mindone's own line of HF packages, in a folder of its own
"${PIP[@]}" --no-deps --target "$VENV/site-mindone" transformers==4.57.1 tokenizers==0.22.1 \
    huggingface_hub==0.36.0 diffusers==0.35.1

# automap itself, so the generator writes listings with automap's own `inspect --json`
"${PIP[@]}" --no-deps -e "$REPO"

# every model package imports, with the generator's run-time set-up (benchmarks/realports/_setup.py)
cd "$REPO"
"$PY" - <<'PY'
import numpy, torch
assert numpy.__version__ < "2", numpy.__version__
from benchmarks.realports._setup import mindformers_on_cpu, prepare
prepare()
mindformers_on_cpu()
import automap, mindcv, mindyolo, open_clip, timm, torchvision, transformers  # noqa: F401
print("torch", torch.__version__, "numpy", numpy.__version__, "transformers", transformers.__version__)
PY
PYTHONPATH="$VENV/site-mindone" "$PY" -c 'import diffusers, mindone.diffusers; print("diffusers", diffusers.__version__, "for mindone")'
echo "ready: $VENV"
