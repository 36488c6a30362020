#!/usr/bin/env python3
"""Load test of a running `hemoscan serve` on loopback (issue 28, item 7). Bounded in count and time.

N requests from C concurrent clients, a share of them malformed or oversized, while S slow clients
trickle headers one byte at a time. Prints p50/p99 latency (valid requests, by kind), answers by
status, requests without an answer, and the server's peak and final RSS (from /proc/PID/status).
Exit status 1 when a valid request got no answer or the server died.

    bench/serve_load.py --port 18091 --pid PID --image slice.png --series series.zip [--token TOKEN]
                        [--requests 10000] [--concurrency 20] [--slow 4] [--bad 0.10] [--max-seconds 600]
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time

BOUNDARY = "hemoscan-load-boundary"


def multipart(name, data, ctype="application/octet-stream"):
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: {ctype}\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class Load:
    def __init__(self, a):
        self.a = a
        self.image = open(a.image, "rb").read()
        self.series = open(a.series, "rb").read() if a.series else None
        self.auth = f"Authorization: Bearer {a.token}\r\n" if a.token else ""
        self.latency = {}      # kind -> [seconds]
        self.status = {}       # (valid|bad, status) -> count
        self.unanswered = {"valid": 0, "bad": 0}
        self.result_ids = []
        self.rss = []
        self.stop = False

    # ---- requests: (kind, valid, raw bytes) ----
    def request(self, method, path, body=b"", headers=""):
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.a.port}\r\nConnection: close\r\n{self.auth}"
                f"{headers}{length}\r\n").encode() + body

    def valid(self, rnd):
        r = rnd.random()
        if r < 0.04:
            return "upload-image", self.request("POST", "/api/predict", multipart("slice.png", self.image, "image/png"),
                                                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n")
        if r < 0.05 and self.series:
            return "upload-series", self.request("POST", "/api/predict",
                                                 multipart("series.zip", self.series, "application/zip"),
                                                 f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n")
        if r < 0.35 and self.result_ids:
            rid = rnd.choice(self.result_ids)
            window = rnd.choice(["", "?window=bone", "?window=subdural"])
            return "slice-png", self.request("GET", f"/api/results/{rid}/slices/0.png{window}")
        if r < 0.45 and self.result_ids:
            return "result-json", self.request("GET", f"/api/results/{rnd.choice(self.result_ids)}")
        if r < 0.60:
            return "results-list", self.request("GET", "/api/results?limit=20")
        if r < 0.75:
            return "page", self.request("GET", rnd.choice(["/", "/assets/app.js", "/assets/style.css"]))
        if r < 0.85:
            return "model", self.request("GET", "/api/model")
        return "health", self.request("GET", "/health")

    def bad(self, rnd):
        kind = rnd.choice(["garbage", "long-line", "huge-headers", "too-large", "not-multipart", "broken-multipart",
                           "foreign-host", "unknown-id", "gzip", "bad-method"])
        ctype = f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        if kind == "garbage":
            raw = os.urandom(rnd.randint(1, 2000))
        elif kind == "long-line":
            raw = b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        elif kind == "huge-headers":
            raw = self.request("GET", "/health", headers="".join(f"X-F{i}: {'b' * 1000}\r\n" for i in range(200)))
        elif kind == "too-large":  # announces 10 GB; sends a little
            raw = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}{ctype}"
                   f"Content-Length: 10000000000\r\n\r\n").encode() + b"x" * 1000
        elif kind == "not-multipart":
            raw = self.request("POST", "/api/predict", b"{}", "Content-Type: application/json\r\n")
        elif kind == "broken-multipart":
            raw = self.request("POST", "/api/predict", multipart("x.png", self.image)[: len(self.image) // 2], ctype)
        elif kind == "foreign-host":
            raw = b"GET /api/results HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"
        elif kind == "unknown-id":
            raw = self.request("GET", "/api/results/0123456789abcdef/slices/0.png")
        elif kind == "gzip":
            raw = self.request("POST", "/api/predict", b"\x1f\x8b" + b"z" * 100, ctype + "Content-Encoding: gzip\r\n")
        else:
            raw = self.request("PATCH", "/api/predict")
        return "bad-" + kind, raw

    async def send(self, raw, timeout=60):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.a.port), 10)
        try:
            writer.write(raw)
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                pass  # the server may answer and close before reading everything (413, 431)
            line = await asyncio.wait_for(reader.readline(), timeout)
            if not line.startswith(b"HTTP/1."):
                return None, b""
            status = int(line.split()[1])
            rest = await asyncio.wait_for(reader.read(), timeout)
            return status, rest
        finally:
            writer.close()

    async def client(self, queue, rnd):
        while not self.stop:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            valid = rnd.random() >= self.a.bad
            kind, raw = self.valid(rnd) if valid else self.bad(rnd)
            t0 = time.monotonic()
            try:
                status, rest = await self.send(raw)
            except (asyncio.TimeoutError, ConnectionError, OSError):
                status, rest = None, b""
            dt = time.monotonic() - t0
            group = "valid" if valid else "bad"
            if status is None:
                self.unanswered[group] += 1
                continue
            self.status[(group, status)] = self.status.get((group, status), 0) + 1
            if valid:
                # Uploads: analysed (201) and turned away by a full queue (503) are different stories.
                label = f"{kind} {status}" if kind.startswith("upload") else kind
                self.latency.setdefault(label, []).append(dt)
            if status == 201:
                body = rest.split(b"\r\n\r\n", 1)[-1]
                try:
                    self.result_ids.append(json.loads(body)["id"])
                except (ValueError, KeyError):
                    pass

    async def slow_client(self):
        """Trickles a request's headers one byte every 0.5 s; reconnects when the server closes."""
        raw = self.request("GET", "/health", headers="X-Slow: " + "s" * 200 + "\r\n")
        while not self.stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.a.port)
                for b in raw:
                    if self.stop:
                        break
                    writer.write(bytes([b]))
                    await writer.drain()
                    await asyncio.sleep(0.5)
                writer.close()
            except (ConnectionError, OSError):
                await asyncio.sleep(0.2)

    async def sample_rss(self):
        while not self.stop:
            self.rss.append(rss_mb(self.a.pid))
            await asyncio.sleep(0.2)

    async def run(self):
        rnd = random.Random(self.a.seed)
        # A few results to read back before the mix starts.
        for _ in range(3):
            status, rest = await self.send(self.valid_upload())
            if status == 201:
                self.result_ids.append(json.loads(rest.split(b"\r\n\r\n", 1)[-1])["id"])
        queue = asyncio.Queue()
        for i in range(self.a.requests):
            queue.put_nowait(i)
        background = [asyncio.create_task(self.slow_client()) for _ in range(self.a.slow)]
        background.append(asyncio.create_task(self.sample_rss()))
        clients = [asyncio.create_task(self.client(queue, random.Random(rnd.random()))) for _ in
                   range(self.a.concurrency)]
        t0 = time.monotonic()
        done, pending = await asyncio.wait(clients, timeout=self.a.max_seconds)
        self.elapsed = time.monotonic() - t0
        self.stop = True
        for t in pending:
            t.cancel()
        self.not_run = queue.qsize()
        await asyncio.sleep(0.6)
        for t in background:
            t.cancel()

    def valid_upload(self):
        return self.request("POST", "/api/predict", multipart("slice.png", self.image, "image/png"),
                            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n")


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000 if s else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--series")
    ap.add_argument("--token")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--slow", type=int, default=4)
    ap.add_argument("--bad", type=float, default=0.10)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--settle", type=float, default=30, help="seconds idle before the final RSS")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    load = Load(a)
    idle = rss_mb(a.pid)
    asyncio.run(load.run())
    time.sleep(a.settle)
    final = rss_mb(a.pid)
    alive = os.path.exists(f"/proc/{a.pid}")
    answered = sum(load.status.values())
    valid_latency = [x for v in load.latency.values() for x in v]
    print(f"requests: {answered + sum(load.unanswered.values())} sent in {load.elapsed:.1f} s "
          f"({a.concurrency} concurrent, {a.slow} slow clients, {a.bad:.0%} malformed/oversized), "
          f"{load.not_run} not sent (time limit)")
    print(f"latency of valid requests: p50 {pct(valid_latency, 50):.1f} ms, p99 {pct(valid_latency, 99):.1f} ms")
    for kind in sorted(load.latency):
        v = load.latency[kind]
        print(f"  {kind:18s} n={len(v):5d}  p50 {pct(v, 50):8.1f} ms  p99 {pct(v, 99):8.1f} ms")
    print("answers by status: " + ", ".join(f"{g} {s}: {n}" for (g, s), n in sorted(load.status.items())))
    print(f"no answer: valid {load.unanswered['valid']}, malformed/oversized {load.unanswered['bad']}")
    peak = max([idle] + [x for x in load.rss if x == x])
    print(f"server RSS: idle {idle:.0f} MB, peak {peak:.0f} MB, {a.settle:.0f} s after {final:.0f} MB; "
          f"{'running' if alive else 'DIED'}")
    bad_valid = sum(n for (g, s), n in load.status.items() if g == "valid" and s >= 500 and s != 503)
    ok = alive and load.unanswered["valid"] == 0 and bad_valid == 0
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
