"""The lab network: a host bridge, NAT, and one network namespace per node.

Layout for a subnet such as 10.231.1.0/24 on bridge ``rlab1``::

    host  rlab1 10.231.1.1/24  --+-- vethA (host side) ~~ eth0 10.231.1.2 in /run/netns/web-3f9a1c
                                 +-- vethB (host side) ~~ eth0 10.231.1.3 in /run/netns/web-77c0de

The host talks to every node directly over the bridge. NAT (a MASQUERADE rule
tagged with the comment ``rollout-lab:<bridge>``) lets nodes reach the Debian
mirror, and keeps a node that resolves its own name from stalling on reverse DNS.
Teardown removes exactly the rules carrying our tag, nothing else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shlex
from collections.abc import Iterable
from pathlib import Path

from rollout import names
from rollout.backends.lab.system import run
from rollout.config import LabSettings
from rollout.errors import EnvironmentProblem

NETNS_DIR = Path("/run/netns")
_IFNAMSIZ = 15  # Linux interface names hold at most 15 characters


def gateway(settings: LabSettings) -> str:
    """The bridge's address: the subnet's first host address."""
    net = ipaddress.ip_network(settings.subnet)
    return str(next(net.hosts()))


def prefixlen(settings: LabSettings) -> int:
    return ipaddress.ip_network(settings.subnet).prefixlen


def allocate_address(subnet: str, used: Iterable[str]) -> str:
    """The lowest free node address of ``subnet``.

    The first host address belongs to the bridge; ``used`` holds the addresses
    recorded for existing nodes, so allocation is collision-free as long as the
    caller holds the lab lock while it records the result.
    """
    net = ipaddress.ip_network(subnet)
    taken = {ipaddress.ip_address(a) for a in used}
    hosts = net.hosts()
    next(hosts)  # the bridge
    for candidate in hosts:
        if candidate not in taken:
            return str(candidate)
    raise EnvironmentProblem(
        f"lab subnet {subnet} has no free address left ({len(taken)} nodes recorded)",
        hint="remove nodes with `rollout lab down`, or set a larger rollout_env.lab.subnet",
    )


def veth_names(bridge: str, node: str) -> tuple[str, str]:
    """(host side, node side) interface names for a node: short and stable.

    Node names may be up to 63 characters but interface names only 15, so
    both derive from a hash of bridge and node name (the bridge keeps two labs
    with a same-named node apart).
    """
    digest = hashlib.sha256(f"{bridge}/{node}".encode()).hexdigest()[:10]
    host, peer = f"rl{digest}h", f"rl{digest}n"
    assert len(host) <= _IFNAMSIZ and len(peer) <= _IFNAMSIZ
    return host, peer


def netns_path(node: str) -> Path:
    return NETNS_DIR / names.name(node, "node name")


def nat_rule(settings: LabSettings) -> list[str]:
    """The POSTROUTING rule spec (without -A/-D) that masquerades the lab subnet."""
    return [
        "POSTROUTING",
        "-s", settings.subnet,
        "!", "-o", settings.bridge,
        "-m", "comment", "--comment", f"rollout-lab:{settings.bridge}",
        "-j", "MASQUERADE",
    ]


def our_nat_rules(listing: str, bridge: str) -> list[list[str]]:
    """The rule specs in ``iptables -t nat -S`` output that carry our tag."""
    tag = f"rollout-lab:{bridge}"
    found = []
    for line in listing.splitlines():
        parts = shlex.split(line)
        if len(parts) > 2 and parts[0] == "-A" and tag in parts:
            found.append(parts[1:])
    return found


def _link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip", "-n", netns] if netns else ["ip"]
    return run([*cmd, "link", "show", "dev", name], check=False).returncode == 0


#: Each node's systemd takes several inotify instances; the kernel's default of
#: 128 per user runs out at around a dozen nodes ("Too many open files" at boot).
INOTIFY_INSTANCES = 1024


def raise_inotify_limit(minimum: int = INOTIFY_INSTANCES) -> None:
    """Raise fs.inotify.max_user_instances to ``minimum`` if it is lower (never lower it)."""
    knob = Path("/proc/sys/fs/inotify/max_user_instances")
    try:
        if int(knob.read_text()) < minimum:
            knob.write_text(f"{minimum}\n")
    except (OSError, ValueError):
        pass  # not fatal: boots fail later with a clear console log if it matters


def ensure_network(settings: LabSettings) -> None:
    """Create the bridge with its address, ip_forward and NAT; each only if absent.
    Also raises the host's inotify instance limit, which nodes need."""
    raise_inotify_limit()
    bridge = names.name(settings.bridge, "bridge")
    gw = f"{gateway(settings)}/{prefixlen(settings)}"
    if not _link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"], what=f"create bridge {bridge}")
    addrs = run(["ip", "-br", "addr", "show", "dev", bridge]).stdout.split()
    if gw not in addrs:
        run(["ip", "addr", "add", gw, "dev", bridge], what=f"address bridge {bridge}")
    run(["ip", "link", "set", bridge, "up"])
    if settings.nat:
        # Forwarding is a host-wide switch other labs rely on too: set, never reset.
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        rule = nat_rule(settings)
        if run(["iptables", "-t", "nat", "-C", *rule], check=False).returncode != 0:
            run(["iptables", "-t", "nat", "-A", *rule], what=f"add NAT for {settings.subnet}")


def remove_network(settings: LabSettings) -> None:
    """Delete our NAT rules, any of our veths left on the bridge, and the bridge."""
    bridge = names.name(settings.bridge, "bridge")
    listing = run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout
    for spec in our_nat_rules(listing, bridge):
        run(["iptables", "-t", "nat", "-D", *spec], what=f"remove NAT rule of {bridge}")
    if _link_exists(bridge):
        ports = run(["ip", "-br", "link", "show", "master", bridge]).stdout
        for line in ports.splitlines():
            port = line.split()[0].split("@")[0] if line.strip() else ""
            if port.startswith("rl") and port.endswith("h"):
                run(["ip", "link", "del", port], check=False)
        run(["ip", "link", "del", bridge], what=f"delete bridge {bridge}")


def ensure_node_link(settings: LabSettings, node: str, address: str) -> None:
    """Give ``node`` a netns with eth0 at ``address``, attached to the bridge.

    Reuses a complete existing setup (a restarted node keeps its address);
    rebuilds a partial one left by a crash.
    """
    names.name(node, "node name")
    names.address(address)
    host, peer = veth_names(settings.bridge, node)
    cidr = f"{address}/{prefixlen(settings)}"
    ns = netns_path(node)
    if ns.exists() and _link_exists(host):
        have = run(["ip", "-n", node, "-br", "addr", "show", "dev", "eth0"], check=False)
        if have.returncode == 0 and cidr in have.stdout.split():
            return
    remove_node_link(settings, node)
    what = f"network of node {node}"
    run(["ip", "netns", "add", node], what=what)
    run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer], what=what)
    run(["ip", "link", "set", host, "master", settings.bridge], what=what)
    run(["ip", "link", "set", host, "up"], what=what)
    run(["ip", "link", "set", peer, "netns", node], what=what)
    run(["ip", "-n", node, "link", "set", peer, "name", "eth0"], what=what)
    run(["ip", "-n", node, "addr", "add", cidr, "dev", "eth0"], what=what)
    run(["ip", "-n", node, "link", "set", "eth0", "up"], what=what)
    run(["ip", "-n", node, "link", "set", "lo", "up"], what=what)
    run(["ip", "-n", node, "route", "add", "default", "via", gateway(settings)], what=what)
    # The address may have belonged to a node destroyed moments ago. The host's
    # neighbour entry still holds that node's MAC and stays REACHABLE for up to
    # ~45 s (HAProxy's checks kept confirming it), so the new node is
    # unreachable that long: a rollout's boots took 8-46 s instead of ~0.7 s.
    run(["ip", "neigh", "flush", "to", address, "dev", settings.bridge], check=False)


def remove_node_link(settings: LabSettings, node: str) -> None:
    """Delete the node's veth pair and netns. Idempotent."""
    host, peer = veth_names(settings.bridge, node)
    if _link_exists(host):
        run(["ip", "link", "del", host], what=f"delete veth of node {node}")
    if _link_exists(peer):
        run(["ip", "link", "del", peer], check=False)
    if netns_path(node).exists():
        run(["ip", "netns", "del", node], what=f"delete netns of node {node}")
