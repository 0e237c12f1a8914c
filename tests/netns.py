"""A small virtual network of "hosts" for the multi-host test: one network namespace per host,
joined by a bridge that lives in a namespace of its own (a "switch"), so nothing at all is
created in the machine's own (root) namespace.

    switch namespace  <prefix>switch:  bridge sg<pid>br, one veth end sg<pid>p<k> per host
    host namespace    <prefix><name>:  lo (up) and eth0, the other veth end, <subnet>.<k>/24

Use:

    net = netns.Network.create(["oracle", "output", "input"])    # Unavailable(reason) if it can't
    try:
        net.address("oracle")                 # "10.231.77.1"
        net.argv("oracle", ["python", ...])   # ip netns exec <ns> python ...
        net.http_status("input", url, token)  # "401", "200", or "error ..." from inside a host
        net.set_link("output", up=False)      # its link down (and up=True: back)
    finally:
        problems = net.destroy()              # [] when every namespace, veth and bridge is gone

Needs root and iproute2's `ip`. Namespace and interface names carry this process's PID, so two
test runs (or anything else on the machine) never collide; the subnet is picked from a few
unusual private ones, the first that no address or route on the machine overlaps.
"""

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time

# Unusual private /24s, tried in order: the first one nothing on the machine overlaps is used.
CANDIDATE_SUBNETS = ("10.231.77.0/24", "10.213.149.0/24", "172.29.213.0/24", "10.254.173.0/24")
NETNS_DIR = "/run/netns"


class Unavailable(Exception):
    """Network namespaces cannot be made here (not root, no `ip`, `ip netns add` refused)."""


def ip(*args, check=True, timeout=20):
    """Run `ip args...`; CalledProcessError (with stderr) if it fails and check is set."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def _error_text(e):
    if isinstance(e, subprocess.CalledProcessError):
        return f"`{' '.join(e.cmd)}` failed (exit {e.returncode}): {(e.stderr or '').strip()}"
    return str(e)


def networks_in_use():
    """Every IPv4 network an address or route on this machine covers: the root namespace's and
    those of the named namespaces (`ip netns list`)."""
    namespaces = [None] + [line.split()[0] for line in ip("netns", "list").stdout.splitlines()
                           if line.strip()]
    used = []
    for ns in namespaces:
        where = [] if ns is None else ["-n", ns]
        try:
            addrs = json.loads(ip(*where, "-j", "-4", "addr", "show").stdout or "[]")
            routes = json.loads(ip(*where, "-j", "-4", "route", "show", "table", "all").stdout
                                or "[]")
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            continue                                # a namespace that went away meanwhile
        for link in addrs:
            for a in link.get("addr_info", []):
                used.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
        for r in routes:
            dst = r.get("dst", "")
            if dst in ("", "default"):
                continue                            # a default route overlaps everything
            try:
                used.append(ipaddress.ip_network(dst, strict=False))
            except ValueError:
                pass
    return used


def pick_subnet(candidates=CANDIDATE_SUBNETS):
    used = networks_in_use()
    for candidate in map(ipaddress.ip_network, candidates):
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise Unavailable(f"every candidate subnet {candidates} overlaps one in use: {used}")


class Network:
    """Host namespaces on one bridge; see the module docstring."""

    def __init__(self, hosts, prefix, subnet):
        self.hosts = list(hosts)
        self.prefix = prefix
        self.subnet = subnet
        self.tag = f"sg{os.getpid()}"               # interface names: at most 15 characters
        self.switch = f"{prefix}switch"
        self.bridge = f"{self.tag}br"
        self.namespaces = []                        # created so far, in order
        self.inodes = {}                            # namespace name -> its nsfs inode
        self._addresses = {}

    # --- building ------------------------------------------------------------------------

    @classmethod
    def create(cls, hosts, prefix=None, subnet=None):
        """Build the network; Unavailable with the reason if namespaces cannot be made here.
        Any later failure removes what was built and is raised as it is."""
        if os.geteuid() != 0:
            raise Unavailable("network namespaces need root (euid is %d)" % os.geteuid())
        if shutil.which("ip") is None:
            raise Unavailable("no `ip` binary (iproute2) on PATH")
        prefix = prefix or f"sgmh{os.getpid()}-"
        try:
            subnet = ipaddress.ip_network(subnet) if subnet else pick_subnet()
        except subprocess.CalledProcessError as e:
            raise Unavailable(_error_text(e)) from None
        net = cls(hosts, prefix, subnet)
        try:
            net._add_namespace(net.switch, unavailable=True)
            net._build()
        except BaseException:
            net.destroy()
            raise
        return net

    def _add_namespace(self, ns, unavailable=False):
        try:
            ip("netns", "add", ns)
        except (subprocess.CalledProcessError, OSError) as e:
            if unavailable:
                raise Unavailable(f"cannot create a network namespace: {_error_text(e)}") \
                    from None
            raise
        self.namespaces.append(ns)
        self.inodes[ns] = os.stat(os.path.join(NETNS_DIR, ns)).st_ino
        ip("-n", ns, "link", "set", "lo", "up")

    def _build(self):
        sw = self.switch
        ip("-n", sw, "link", "add", self.bridge, "type", "bridge")   # no STP: forwards at once
        ip("-n", sw, "link", "set", self.bridge, "up")
        hosts = list(self.subnet.hosts())
        for k, name in enumerate(self.hosts, start=1):
            ns = self.ns(name)
            self._add_namespace(ns)
            port = f"{self.tag}p{k}"
            ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("-n", sw, "link", "set", port, "master", self.bridge)
            ip("-n", sw, "link", "set", port, "up")
            address = hosts[k - 1]
            ip("-n", ns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            self._addresses[name] = str(address)

    # --- using ---------------------------------------------------------------------------

    def ns(self, host):
        return f"{self.prefix}{host}"

    def address(self, host):
        return self._addresses[host]

    def argv(self, host, argv):
        """argv run inside host's namespace. `ip netns exec` execs it: the PID stays the same,
        so a signal sent to the Popen reaches the program itself."""
        return ["ip", "netns", "exec", self.ns(host), *map(str, argv)]

    def set_link(self, host, up):
        """Take host's link to the network down (up=False) or bring it back: its eth0, inside
        its own namespace. Down, nothing reaches it or leaves it; its address stays."""
        ip("-n", self.ns(host), "link", "set", "eth0", "up" if up else "down")

    def identify(self, pid):
        """The name of the namespace process pid is in ("" if none of the named ones)."""
        return ip("netns", "identify", str(pid), check=False).stdout.strip()

    def http_status(self, host, url, token=None, timeout=5.0):
        """GET url from inside host's namespace (no proxies), with "Authorization: Bearer
        <token>" if a token is given; the HTTP status as text ("200", "401"), or "error
        <Exception>: <message>" if no answer came. The token travels in the environment, not
        on a command line."""
        env = {**os.environ, "PROBE_TOKEN": token or ""}
        r = subprocess.run(self.argv(host, [sys.executable, "-c", PROBE, url, str(timeout)]),
                           capture_output=True, text=True, env=env, timeout=timeout + 20)
        if r.returncode != 0:
            return f"error probe exit {r.returncode}: {r.stderr.strip()}"
        return r.stdout.strip()

    # --- tearing down --------------------------------------------------------------------

    def pids(self, ns):
        r = ip("netns", "pids", ns, check=False)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def destroy(self, grace=5.0):
        """Remove every namespace made (hosts first, the switch last); the veths and the bridge
        go with them, as they never lived anywhere else. A process still inside one (only this
        test's can be: nobody else knows the names) gets SIGTERM, then SIGKILL after `grace`
        seconds. Returns the problems found afterwards, [] if all is gone."""
        problems = []
        for ns in reversed(self.namespaces):
            left = self.pids(ns)
            if left:
                problems.append(f"processes {left} were still in {ns}; stopped them")
                _terminate(left, grace)
            r = ip("netns", "del", ns, check=False)
            if r.returncode != 0 and os.path.exists(os.path.join(NETNS_DIR, ns)):
                problems.append(f"`ip netns del {ns}` failed: {r.stderr.strip()}")
        self.namespaces = []
        return problems + self.leftovers()

    def leftovers(self):
        """What of this network is still on the machine: named namespaces with our prefix,
        processes or mounts still holding one of our namespaces, links in the root namespace
        with our tag. [] if nothing."""
        found = []
        names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines()
                 if line.strip()]
        found += [f"namespace {n} still listed" for n in names if n.startswith(self.prefix)]
        wanted = {f"net:[{ino}]": ns for ns, ino in self.inodes.items()}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                link = os.readlink(f"/proc/{pid}/ns/net")
            except OSError:
                continue
            if link in wanted:
                found.append(f"process {pid} still in {wanted[link]}")
        with open("/proc/self/mountinfo") as f:
            found += [f"mount still there: {line.strip()}" for line in f
                      if self.prefix in line]
        links = json.loads(ip("-j", "link", "show").stdout or "[]")
        found += [f"link {link['ifname']} in the root namespace" for link in links
                  if link.get("ifname", "").startswith(self.tag)]
        return found


def _terminate(pids, grace):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"    # a zombie is as good as gone
    except (FileNotFoundError, IndexError):
        return False


# Run inside a host namespace by Network.http_status: argv url timeout, token in PROBE_TOKEN.
PROBE = r"""
import os, sys, urllib.error, urllib.request
url, timeout = sys.argv[1], float(sys.argv[2])
request = urllib.request.Request(url)
if os.environ.get("PROBE_TOKEN"):
    request.add_header("Authorization", "Bearer " + os.environ["PROBE_TOKEN"])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=timeout) as response:
        print(response.status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError as e:
    reason = getattr(e, "reason", e)
    print(f"error {type(reason).__name__}: {reason}")
"""
