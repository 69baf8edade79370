"""Network namespaces for the local cluster's boxes, through iproute2's `ip`."""
from __future__ import annotations

import re
import shutil
import subprocess

from server.devtools.processes import ClusterError

IP_SECONDS = 15.0


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_SECONDS)


def ip_ok(*args: str) -> None:
    result = ip(*args)
    if result.returncode != 0:
        raise ClusterError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name).returncode == 0


def exists(name: str) -> bool:
    listed = ip("netns", "list")
    return listed.returncode == 0 and name in [line.split()[0] for line in
                                               listed.stdout.splitlines() if line.strip()]


def possible(cluster_id: str) -> bool:
    """Whether this user may create a namespace and a veth into it: by trying."""
    if shutil.which("ip") is None:
        return False
    probe, link = f"ywm-{cluster_id}-probe", f"ywm{cluster_id}p"
    try:
        if ip("netns", "add", probe).returncode != 0:
            return False
        try:
            return ip("link", "add", link, "type", "veth", "peer", "name", f"{link}q",
                      "netns", probe).returncode == 0
        finally:
            ip("link", "del", link)
            ip("netns", "del", probe)
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_slot(cluster_id: str) -> int:
    """A third octet S with no 10.213.S.x address or route on this host yet."""
    seen = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show").stdout
    used = {int(octet) for octet in
            re.findall(r"\b10\.213\.(\d+)\.", seen)}
    first = int(cluster_id, 16) % 250 + 1
    for step in range(250):
        slot = (first + step - 1) % 250 + 1
        if slot not in used:
            return slot
    raise ClusterError("no free 10.213.S.0/24 for the cluster's namespaces")
