# Sourced by tools/race-16-cores.sh and tools/image-race-16-cores.sh on a bare machine.
# use_carried_wheels NAME: if flask or waitress is missing, install the wheels carried in .whl/
# into /tmp/race-site and put it on PYTHONPATH; then stop (exit 1) unless numpy, requests,
# matplotlib, flask and waitress all import. NAME is the script's, for its messages.
use_carried_wheels() {
    if ! $PYTHON -c "import flask, waitress" 2>/dev/null; then
        echo "$1: installing flask and waitress from .whl/"
        $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target /tmp/race-site .whl/*.whl
        export PYTHONPATH=/tmp/race-site${PYTHONPATH:+:$PYTHONPATH}
    fi
    $PYTHON -c "import numpy, requests, matplotlib, flask, waitress" || {
        echo "$1: numpy, requests, matplotlib, flask and waitress are needed" >&2; exit 1; }
}
