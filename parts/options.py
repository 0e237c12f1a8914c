"""What every process's command line shares: the server options, --token, --original, the
start-up line, the log's form, the training thread's priority, the peak memory figure.
"""

import argparse
import ipaddress
import logging
import math
import os
import resource
import sys
import threading

import generate
from parts import checkpoint
from synthgrad import DEFAULT_HOST, MAX_BODY_BYTES, MAX_EXAMPLES_PER_REQUEST

log = logging.getLogger("synthgrad")

DEFAULT_TRAINING_NICE = 10      # requests get a core at once (docs/settings.md)
DEFAULT_MAX_EXAMPLES = 200_000  # indices 0..N-1: the default data set's size


def lower_thread_priority(nice):
    """Make the calling thread `nice` steps nicer (at most 19), leaving the threads that answer
    requests as they are (Linux schedules threads on their own); True if done."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        return True
    except OSError as e:
        log.warning("could not lower the training thread's priority (%s); training at the "
                    "same priority as requests", e)
        return False


def peak_rss_mb():
    """This process's peak resident memory so far, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


def port(text):
    """Every port option's argparse type: 0 (any free port) to 65535."""
    if not (text.strip().isdecimal() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"expected a port, 0 to 65535, got {text!r}")
    return int(text)


def add_server_arguments(p, default_port, what, checkpointed, held):
    """The options both servers share; `what` their metrics lines hold, `checkpointed` what a
    checkpoint keeps, `held` what --max-examples costs."""
    p.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES,
                   help=f"example indices accepted are 0..N-1 (default {DEFAULT_MAX_EXAMPLES:,}, "
                        f"the default data set's size); {held}")
    checkpoint.add_arguments(p, checkpointed)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: only this machine can connect)")
    p.add_argument("--port", type=port, default=default_port,
                   help=f"port to listen on (default {default_port}, the original's; 0: any free)")
    token_argument(p)
    p.add_argument("--allow-no-token", action="store_true",
                   help="listen beyond this machine without a token (default: refused; anyone "
                        "who can reach it could send it training data)")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"refuse larger request bodies with a 413 (default {MAX_BODY_BYTES:,}: "
                        f"twice {MAX_EXAMPLES_PER_REQUEST:,} examples in JSON)")
    p.add_argument("--nice", type=int, default=DEFAULT_TRAINING_NICE,
                   help="run the training thread this many steps nicer than the requests' "
                        "(default %(default)s: a request gets a core at once; Linux only)")
    p.add_argument("--metrics", type=generate.out_text, default=None,
                   help=f"append a JSON line of figures ({what}) to this file every "
                        "--metrics-interval seconds (default: none)")
    p.add_argument("--metrics-interval", type=float, default=2.0,
                   help="seconds between metrics lines (default 2: smooth curves, tiny files)")
    p.add_argument("--report-every", type=float, default=10.0,
                   help=f"seconds between status lines on the terminal ({what}; default "
                        "%(default)g; 0: none)")


def check_at_least(p, args, minimum, *names):
    """Refuse the first option (by dest) below minimum, or NaN; None (not given) passes."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not value >= minimum:
            p.error(f"--{name.replace('_', '-')} must be at least {minimum} (got {value})")


def check_positive(p, args, *names):
    """Refuse the first option (by dest) that is not a positive finite number ("finite" said
    only of a value that is not)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            finite = "" if math.isfinite(value) else " and finite"
            p.error(f"--{name.replace('_', '-')} must be positive{finite} (got {value:g})")


def check_server_arguments(p, args):
    """Refuse impossible values of the shared options and of --learning-rate."""
    checkpoint.check_arguments(p, args)
    check_at_least(p, args, 1, "max_examples")
    check_at_least(p, args, 0, "report_every")
    check_at_least(p, args, 1024, "max_body_bytes")
    check_positive(p, args, "learning_rate", "metrics_interval")
    if not 0 <= args.nice <= 19:
        p.error("--nice must be between 0 and 19")
    check_open(p, args)


def loopback(host):
    """True for an address only this machine can reach (127.x, ::1, localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:                    # a name: it may resolve beyond this machine
        return False


def check_open(p, args):
    """Refuse to listen beyond loopback without a token unless --allow-no-token (said loudly)."""
    if loopback(args.host) or args.token:
        return
    if not args.allow_no_token:
        p.error(f"--host {args.host} without a token would answer anyone who can reach it: "
                "set SYNTHGRAD_TOKEN (or --token) on every process, or pass --allow-no-token "
                "if that is what you mean")
    log.warning("listening on %s without a token (--allow-no-token): anyone who can reach it "
                "is answered", args.host)


# What a server's state takes besides its own settings (the options above, by dest).
SERVER_DEFAULTS = dict(max_examples=DEFAULT_MAX_EXAMPLES, token=None,
                       nice=DEFAULT_TRAINING_NICE, max_body_bytes=MAX_BODY_BYTES,
                       checkpoint=None, checkpoint_interval=checkpoint.DEFAULT_INTERVAL,
                       resume=False)

# options of the process, not of a server's state
SERVER_ONLY = ("host", "port", "metrics", "metrics_interval", "report_every", "original",
               "allow_no_token", "live", "live_port")


def token_argument(p):
    """--token, defaulting to $SYNTHGRAD_TOKEN: every script takes the same shared secret."""
    p.add_argument("--token", default=os.environ.get("SYNTHGRAD_TOKEN") or None,
                   help="shared secret every request must carry (default: $SYNTHGRAD_TOKEN, "
                        "else none: fine on 127.0.0.1, not on another address)")


def parse_with_original(p, argv, original, what):
    """p.parse_args(argv) with --original: then the original project's settings (`original`
    {dest: value}, `what` in words) are the defaults."""
    p.add_argument("--original", action="store_true",
                   help=f"start from the original project's settings ({what}) instead of the "
                        "measured defaults (docs/settings.md); options given as well still win")
    known, _ = p.parse_known_args(argv)
    if known.original:
        p.set_defaults(**original)
    return p.parse_args(argv)


def printable(args):
    """The parsed options as "name value, ..." for the start-up line, the token masked and
    --oracle-url left out where --colocated means there is no oracle."""
    shown = vars(args).copy()
    if shown.get("token"):
        shown["token"] = "***"
    if shown.get("colocated"):
        shown.pop("oracle_url", None)
    return generate.settings_line(shown)


class _Formatter(logging.Formatter):
    """ "HH:MM:SS name: message", with the level after the name unless it is INFO (and the
    traceback below, for log.exception's)."""

    def __init__(self, name):
        super().__init__(datefmt="%H:%M:%S")
        self.name = name

    def format(self, record):
        level = "" if record.levelno == logging.INFO else f" {record.levelname}"
        line = f"{self.formatTime(record, self.datefmt)} {self.name}{level}: {record.getMessage()}"
        return line + "\n" + self.formatException(record.exc_info) if record.exc_info else line


def setup_logging(name):
    """Every line a process writes as "HH:MM:SS name: message" on stdout; waitress only warns."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter(name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("waitress").setLevel(logging.WARNING)
