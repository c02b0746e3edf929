"""Slow HTTP clients (slowloris) in a process of their own, so they compete with the server, not with the test's
own client threads for a GIL.

`python tests/support/slow_clients.py --port P --slow N --silent M --seconds S` opens N connections that send
a request head one byte every --byte-every seconds and never finish it, and M that send nothing; each one
reconnects when the server closes it. Prints one JSON object: for every connection the server closed,
the seconds it was held and the first bytes the server sent (base64)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import time

HEAD = b"GET /similar-items?item_id=i1 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000


async def one(host: str, port: int, trickle: bool, every: float, until: float, out: list[tuple[float, bytes]]) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        t0, answer = time.monotonic(), b""
        try:
            for i in range(len(HEAD)):
                if trickle:
                    writer.write(HEAD[i : i + 1])
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(4096), every)
                    break  # the server answered or closed
                if time.monotonic() >= until:
                    return
        except OSError:
            pass
        finally:
            writer.close()
        out.append((time.monotonic() - t0, answer))


async def main_async(args: argparse.Namespace) -> list[tuple[float, bytes]]:
    until = time.monotonic() + args.seconds
    out: list[tuple[float, bytes]] = []
    tasks = [one(args.host, args.port, True, args.byte_every, until, out) for _ in range(args.slow)]
    tasks += [one(args.host, args.port, False, args.byte_every, until, out) for _ in range(args.silent)]
    await asyncio.gather(*tasks)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--slow", type=int, default=300)
    ap.add_argument("--silent", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--byte-every", type=float, default=0.25)
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    print(json.dumps({"closed": [[held, base64.b64encode(answer).decode()] for held, answer in out]}))


if __name__ == "__main__":
    main()
