#!/usr/bin/env bash
# The race on images (python -m lab.image_race) on a machine with many cores: a chain of K = 2, 4
# and 8 co-located stages classifying Fashion-MNIST (784-W x K-10, every layer its own stage)
# (counting steps at --delay 1, lab.image_race's default) against backprop of the same network
# in one process given the same K cores (OpenBLAS on K threads), width 1024, 1 seed, 40 s a
# side: 3 x 2 x 40 s of training plus start-up and measuring, about 6 minutes on 16 cores.
# Needs numpy, requests, matplotlib, flask and waitress and the four Fashion-MNIST IDX files; no
# TensorFlow (the chain's boundary models are numpy).
#
#   tools/image-race-16-cores.sh --fetch   here, with PyPI and the images: the wheels a bare
#                                          machine lacks (flask, waitress and theirs, for Python
#                                          3.12) into .whl/, the IDX files into .whl/images/
#   tools/image-race-16-cores.sh [OUT]     there: install from .whl/ if flask or waitress is
#                                          missing, run the race, copy image-race.md, .json and
#                                          .png into OUT (default: $OUT, else runs/)
#
# With the device tool: `echo /.whl/ >> .git/info/exclude`, fetch, then run with carry [".whl"]
# and the command `PYTHONUNBUFFERED=1 tools/image-race-16-cores.sh`. Other settings:
# IMAGE_RACE_ARGS, e.g. IMAGE_RACE_ARGS="--widths 256,1024 --seconds 30".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--fetch" ]; then
    tools/race-16-cores.sh --fetch
    images=$($PYTHON -c "from datasets import images; print(images.find('fashion-mnist', None, download=False))")
    mkdir -p .whl/images
    cp "$images"/*-ubyte* .whl/images/
    echo "image-race-16-cores: wheels in .whl/, images (from $images) in .whl/images/"
    exit 0
fi

out=${1:-${OUT:-runs}}
source tools/carried-wheels.sh
use_carried_wheels image-race-16-cores
image_dir=()
if [ -d .whl/images ]; then image_dir=(--image-dir .whl/images); fi
echo "image-race-16-cores: $(nproc) cores, $($PYTHON --version)"
start=$(date +%s)
rm -rf /tmp/image-race-16-cores
$PYTHON -m lab.image_race --stages 2,4,8 --widths 1024 --seeds 1 --seconds 40 \
    "${image_dir[@]}" --run-dir /tmp/image-race-16-cores ${IMAGE_RACE_ARGS:-}
mkdir -p "$out"
cp /tmp/image-race-16-cores/image-race.{md,json,png} "$out"/
echo "image-race-16-cores: done in $(( $(date +%s) - start )) s; image-race.md, .json and .png" \
     "in $out"
