#!/usr/bin/env bash
# The race (lab/bench.py --race) on a machine with many cores: a chain of K = 2, 4 and 8 stages,
# each boundary's model beside the stage above it, against backprop of the same network in one
# process given the same K cores (OpenBLAS on K threads), width 1024, minibatch 100, 3 seeds,
# 12 s a run: about 6 minutes on 16 cores. Needs numpy, requests, matplotlib, flask and
# waitress; no TensorFlow (the race starts no oracle.py).
#
#   tools/race-16-cores.sh --fetch        here, with PyPI: the wheels a bare machine lacks
#                                         (flask, waitress and theirs) into .whl/ for Python 3.12
#   tools/race-16-cores.sh [OUT]          there: install from .whl/ if flask or waitress is
#                                         missing, run the race, copy race.md, race.json and
#                                         race.png into OUT (default: $OUT, else runs/)
#
# With the device tool: `echo /.whl/ >> .git/info/exclude`, fetch, then run with carry [".whl"]
# and the command `PYTHONUNBUFFERED=1 tools/race-16-cores.sh`. Other settings: RACE_ARGS, e.g.
# RACE_ARGS="--stages 2,4 --seconds 20" tools/race-16-cores.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--fetch" ]; then
    $PYTHON -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whl \
        flask==3.1.3 werkzeug==3.1.9 waitress==3.0.2 blinker==1.9.0 itsdangerous==2.2.0 \
        click==8.2.1 jinja2==3.1.6 markupsafe==3.0.2
    exit 0
fi

out=${1:-${OUT:-runs}}
source tools/carried-wheels.sh
use_carried_wheels race-16-cores
echo "race-16-cores: $(nproc) cores, $($PYTHON --version)"
start=$(date +%s)
$PYTHON -m lab.bench --race --stages 2,4,8 --widths 1024 --batch-sizes 100 --seeds 3 \
    --seconds 12 --run-dir /tmp/race-16-cores ${RACE_ARGS:-}
mkdir -p "$out"
cp /tmp/race-16-cores/race.md /tmp/race-16-cores/race.json /tmp/race-16-cores/race.png "$out"/
echo "race-16-cores: done in $(( $(date +%s) - start )) s; race.md, race.json, race.png in $out"
