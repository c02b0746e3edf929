"""Derive the host-networking variant of docker-compose.yml that CI runs (../shared/container/README.md).

The Docker engine of these machines has no bridge network, so every build uses the host network and
every container runs with `network_mode: host`. Compose v1.29 refuses `ports:`/`networks:` next to host
networking and cannot delete keys through an override file, so the variant is derived here instead and
the main file stays exactly what users run. On the host network the API listens on 127.0.0.1 at a port
chosen by the caller (the machine is shared: 8000 may be taken).

    .venv/bin/python tests/docker/compose_ci.py --port 18000 > /tmp/compose.ci.yml
    docker-compose --project-directory . -f /tmp/compose.ci.yml up -d
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def host_network_variant(compose: dict[str, Any], port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    """A copy of `compose` with host networking everywhere and the API on host:port.

    Drops `ports`, `networks` and `links` of every service and the top-level `networks`; sets
    `network_mode: host` and `build.network: host`; sets HOST/PORT of services that publish ports.
    """
    out = copy.deepcopy(compose)
    out.pop("networks", None)
    for service in out.get("services", {}).values():
        publishes = bool(service.pop("ports", None))
        service.pop("networks", None)
        service.pop("links", None)
        service["network_mode"] = "host"
        build = service.get("build")
        if build is not None:
            build = {"context": build} if isinstance(build, str) else build
            build["network"] = "host"
            service["build"] = build
        if publishes:
            env = service.setdefault("environment", {})
            if isinstance(env, list):  # KEY=VALUE form
                env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
                service["environment"] = env
            env["HOST"] = host
            env["PORT"] = str(port)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="where the API listens on the host")
    ap.add_argument("--compose-file", type=Path, default=ROOT / "docker-compose.yml")
    args = ap.parse_args(argv)
    doc = yaml.safe_load(args.compose_file.read_text(encoding="utf-8"))
    yaml.safe_dump(host_network_variant(doc, args.port), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
