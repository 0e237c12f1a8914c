"""Joining a Ray cluster as a chain's driver (chain.py --ray), fast: a start that cannot work
ends in one line within seconds, before any run folder exists.
"""

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile

from parts import children

RAY_PIN = "ray==2.60.0"                # the version tests/ runs (requirements-test.txt)
MISSING = (f"chain.py --ray needs Ray, which make demo does not install: pip install "
           f"'{RAY_PIN}' (make test's environment has it: .venv/bin/python chain.py --ray)")
CONNECT_TRIES = 5                      # seconds ray.init tries a cluster that refuses us
TRIES_SETTING = "RAY_gcs_server_port_wait_time_s"      # where ray.init reads them
REACH_S = 3.0                          # seconds a cluster's address may take to accept at all
# The repository travels to every machine (Ray's working_dir) without these.
EXCLUDES = ["runs", "progress", "docs", "tests"]          # Ray leaves out .git, .venv too
said_joining = []                      # what Ray wrote while connect() joined (one driver each)
SET_TOKEN = ("export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the head's token> here "
             "(docs/several-machines.md)")


def import_ray():
    """The ray module; SystemExit saying how to get it if it is not installed."""
    try:
        import ray
    except ImportError:
        raise SystemExit(MISSING) from None
    return ray


def connect(address, place=None, cpus=1):
    """Join the Ray cluster at `address` ("local": a fresh instance here, with at least `cpus`)
    and check that a machine declares each resource in `place`. Fails fast, in one line
    (SystemExit): nothing listening (a TCP look first), a token refused or missing
    (CONNECT_TRIES s, not Ray's 20), a resource no machine declares. What Ray wrote meanwhile
    goes to said_joining (then the run folder's ray.log), not the terminal."""
    ray = import_ray()
    env_vars = {"RAY_USAGE_STATS_ENABLED": "0", "OPENBLAS_NUM_THREADS": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    local = address == "local"
    if not local and "://" not in address and address != "auto":
        look_for(address)
    said_joining.clear()
    handled = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)
               if callable(signal.getsignal(s))}
    tries = os.environ.get(TRIES_SETTING)             # as it was, put back after
    if not local:
        os.environ[TRIES_SETTING] = str(CONNECT_TRIES)
    try:
        with stderr_kept(said_joining):
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env=dict(working_dir=str(children.TOP), excludes=EXCLUDES,
                                      env_vars=env_vars),
                     **(dict(include_dashboard=False, num_cpus=max(cpus, os.cpu_count() or 1))
                        if local else {}))
    except SystemExit as e:                        # Ray's own SIGTERM handler, as it joined
        if e.code != signal.SIGTERM:
            raise
        raise KeyboardInterrupt from None          # a stop asked for, as ours would say
    except Exception as e:                         # ConnectionError, AuthenticationError
        raise SystemExit(f"chain.py: cannot join the Ray cluster at {address}: "
                         f"{why_not_joined(e, ''.join(said_joining))}") from None
    finally:
        for signum in handled:                     # Ray's handler exits at once: ours,
            signal.signal(signum, handled[signum])     # which stop the run first, back
        os.environ.pop(TRIES_SETTING, None)
        if tries is not None:
            os.environ[TRIES_SETTING] = tries
    declared = ray.cluster_resources()
    missing = sorted({r for r in place or () if r not in declared})
    if missing:
        ray.shutdown()
        raise SystemExit(f"chain.py: --place: no machine of the cluster declares "
                         f"{', '.join(missing)} (on the machine meant: ray start "
                         f"--resources='{{\"{missing[0]}\": 1}}'); the cluster's "
                         f"machines declare: {', '.join(custom(declared)) or 'none'}")


def custom(resources):
    """The names among Ray resources {name: amount} that a `ray start --resources` declared."""
    return sorted(r for r in resources if r not in ("CPU", "GPU", "memory",
                  "object_store_memory") and not r.startswith("node:"))


def look_for(address):
    """SystemExit in one line unless something accepts a connection at HOST:PORT within
    REACH_S s (ray.init would try an empty address for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_S).close()
    except ValueError:
        raise SystemExit(f"chain.py: --ray {address}: expected HOST:PORT, the head's address "
                         f"(e.g. 10.0.0.1:6379), or no address for a fresh local Ray") from None
    except OSError as e:
        raise SystemExit(f"chain.py: no Ray cluster at {address}: "
                         f"{e.strerror or type(e).__name__} (is `ray start --head --port "
                         f"{port}` running on {host}? docs/several-machines.md)") from None


def why_not_joined(error, said):
    """ray.init's failure in words: a token refused or missing, else its first line."""
    if "InvalidAuthToken" in said:
        return f"it refused this machine's Ray token: {SET_TOKEN}"
    if "no authentication token was found" in str(error):
        return f"it asks for a Ray token and this machine has none: {SET_TOKEN}"
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (f"{first} (is `ray start --head` running there, and RAY_AUTH_MODE=token with its "
            f"token set here? docs/several-machines.md)")


@contextlib.contextmanager
def stderr_kept(lines):
    """What is written to file descriptor 2 in the block (Ray's C++ writes there, past
    sys.stderr) appended to `lines` instead of reaching the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            lines.append(kept.read().decode(errors="replace"))
