#!/usr/bin/env python3
"""Opens N keep-alive connections to a front door, sends one request on each,
reads the answers, then holds them all idle and prints the front door's RSS.

    benches/idle_conns.py PORT PID [N] [PATH]     (PATH "-": connect only, send nothing)

Prints one line: `conns=N ok=K rss_before_kib=A rss_busy_kib=P rss_idle_kib=B
per_conn_bytes=C`: RSS before, right after the last answer, and after 3 s idle.
Bounded: every socket has a 10 s timeout and the script exits after one pass.
Needs `ulimit -n` above N (the script raises its soft limit when it can).
"""

import resource
import selectors
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    port, pid = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    path = sys.argv[4] if len(sys.argv) > 4 else "/ping"
    silent = path == "-"  # connect only, send nothing
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 100)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    before = rss_kib(pid)
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    socks, ok = [], 0
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + 60
    # Open and ask in batches, so the front door's accept backlog never overflows.
    batch = 200
    for start in range(0, n, batch):
        opened = []
        for _ in range(min(batch, n - start)):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            opened.append(s)
            if silent:
                continue
            s.sendall(request)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, bytearray())
        socks.extend(opened)
        pending = 0 if silent else len(opened)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                buf = key.data
                chunk = key.fileobj.recv(65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    pending -= 1
                    continue
                buf.extend(chunk)
                head, sep, body = bytes(buf).partition(b"\r\n\r\n")
                if sep:
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if len(body) >= length:
                        if head.startswith(b"HTTP/1.1 200"):
                            ok += 1
                        sel.unregister(key.fileobj)
                        pending -= 1
    peak = rss_kib(pid)
    # The front door frees an idle connection's HTTP buffers after 250-500 ms
    # and returns freed memory to the system a second later: settle first.
    time.sleep(3)
    idle = rss_kib(pid)
    per_conn = (idle - before) * 1024 // max(1, n)
    print(
        f"conns={n} ok={ok} rss_before_kib={before} rss_busy_kib={peak} "
        f"rss_idle_kib={idle} per_conn_bytes={per_conn}"
    )
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
