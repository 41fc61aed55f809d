"""The systemd drop-in that lets the service reach its LLM server on the LAN, and nothing else.

The unit has `PrivateNetwork=yes`, `IPAddressDeny=any` and only AF_UNIX. With
`[llm] backend = "server"`, `sudo make install` runs
`python -m sayso.service.llm_unit /etc/sayso/config.toml` and writes what it prints to
/etc/systemd/system/sayso.service.d/llm-server.conf (nothing printed: no
drop-in). The server's name is resolved here, at install, since the service
cannot reach a DNS server; a name in /etc/hosts still resolves at run time.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from urllib.parse import urlsplit

from sayso.config import Settings, load
from sayso.errors import ConfigError, SaysoError

DROPIN_NAME = "llm-server.conf"


def server_addresses(url: str) -> list[str]:
    """The IP addresses `url`'s host stands for, literal or resolved now."""
    host = urlsplit(url).hostname or ""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as e:
        raise ConfigError(f"llm.server_url: cannot resolve {host!r} ({e}); use the server's IP address") from None
    return sorted({str(info[4][0]) for info in infos})


def dropin(settings: Settings) -> str:
    """The drop-in's text for these settings; '' when the backend is local (no network at all)."""
    s = settings.llm
    if s.backend != "server":
        return ""
    addresses = server_addresses(s.server_url)
    families = ["AF_UNIX"] + sorted({"AF_INET6" if ":" in a else "AF_INET" for a in addresses})
    url = urlsplit(s.server_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return "\n".join([
        f"# Written by `sudo make install` from the config: [llm] backend = \"server\", {s.server_url}.",
        "# The unit's network opens to the server's address alone (IPAddressDeny=any stays); systemd",
        f"# cannot filter the port of an outgoing connection, so port {port} is not enforced here (see",
        "# docs/llm-server.md for an nftables rule that does). Remove this file and run",
        "# `systemctl daemon-reload` to close the network again.",
        "[Service]",
        "PrivateNetwork=no",
        "RestrictAddressFamilies=",
        f"RestrictAddressFamilies={' '.join(families)}",
        f"IPAddressAllow={' '.join(addresses)}",
        "",
    ])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sayso.service.llm_unit CONFIG", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dropin(load(argv[0])))
    except SaysoError as e:
        print(f"sayso: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
