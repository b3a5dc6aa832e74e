#!/usr/bin/env bash
# Packaging as users install it: build the sdist and, from it, the wheel; install the wheel into three clean
# virtual environments (no framework, torch only, MindSpore only); in each, run check_install.py from a folder
# outside the checkout, so that only the installed package can be imported.
#
# Wheels come from a wheelhouse kept between runs (AUTOMAP_WHEELHOUSE, default ~/.cache/automap-ci/wheels),
# installed with --no-index; only what it lacks is downloaded, once. Needs `build` (the dev extra) and, for the
# .pth inputs of the set-ups without torch, torch in the python3 that runs it (the dev set-up).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/automap-packaging.XXXXXX")"
trap 'rm -rf "$work"' EXIT
wheelhouse="${AUTOMAP_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/automap-ci/wheels}"
constraints="$here/constraints.txt"
mkdir -p "$wheelhouse"
started=$SECONDS

# Build from a copy, so the checkout gets no build/ or egg-info; the wheel is built from the unpacked sdist.
mkdir "$work/src"
cp -r "$root/automap" "$root/pyproject.toml" "$root/README.md" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
if ! python3 -m build --no-isolation --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1; then
    cat "$work/build.log"
    exit 1
fi
wheel="$(ls "$work"/dist/automap-*.whl)"
echo "built $(cd "$work/dist" && echo automap-*) in $((SECONDS - started)) s"

python3 "$here/check_install.py" make-inputs "$work/inputs"  # .pth files written by torch.save

declare -A extra=([none]="" [torch]="[torch]" [mindspore]="[mindspore]")
status=0
for setup in none torch mindspore; do
    step=$SECONDS
    python3 -m venv "$work/venv-$setup"
    py="$work/venv-$setup/bin/python"
    install=("$py" -m pip install -q --no-index --find-links "$wheelhouse" -c "$constraints" "$wheel${extra[$setup]}")
    if ! "${install[@]}" >/dev/null 2>&1; then
        echo "filling the wheelhouse $wheelhouse for the '$setup' set-up"
        python3 -m pip download -q -d "$wheelhouse" -c "$constraints" "$wheel${extra[$setup]}"
        rm -f "$wheelhouse"/automap-*.whl
        "${install[@]}"
    fi
    installed=$SECONDS
    echo "== $setup: installed in $((installed - step)) s"
    (cd "$work" && "$py" "$here/check_install.py" "$setup" --inputs "$work/inputs") || status=1
    echo "== $setup: checked in $((SECONDS - installed)) s"
    rm -rf "$work/venv-$setup"  # MindSpore alone takes 2.5 GB
done
echo "packaging checks took $((SECONDS - started)) s"
exit $status
