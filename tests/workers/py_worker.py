#!/usr/bin/env python3
"""A rip-server worker in plain Python (stdlib only): the worker protocol in
one readable file, as a model for workers in other languages.

1. Read the RIP_* environment the manager sets.
2. Listen on RIP_SOCKET (a Unix socket, mode 0600), HTTP/1.1 with keep-alive.
3. Serve one request at a time; a request arriving while another is in
   flight gets `503` with `Rip-Worker-Busy: 1` at once (never queued).
4. Once listening, join: POST /worker {"op":"join",...} to RIP_CONTROL_SOCKET.
5. On SIGTERM/SIGINT (or after RIP_MAX_REQUESTS requests): quit, finish the
   request in flight, remove the socket, exit 0. From that moment new
   arrivals get the busy 503 too, so the front door retries elsewhere.

Routes: /ping, /whoami, /sleep?ms=N, POST /echo; anything else is 404.
One test hook, /hold, for tests that run this worker directly with stdin and
stdout piped: it prints `holding` once it has the request slot and answers
`released` when a line arrives on stdin, so a test knows a request is in
flight without timing anything.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from urllib.parse import parse_qs

WORKER_ID = int(os.environ["RIP_WORKER_ID"])
SOCKET = os.environ["RIP_SOCKET"]
CONTROL = os.environ.get("RIP_CONTROL_SOCKET")  # absent: standalone, no join/quit
APP = os.environ.get("RIP_APP", "py")
VERSION = int(os.environ.get("RIP_VERSION") or 0)
MAX_REQUESTS = int(os.environ.get("RIP_MAX_REQUESTS") or 0)  # 0: never recycle

IDLE_TIMEOUT = 10  # seconds an idle keep-alive connection is kept open

slot = threading.Lock()  # held while a request is in flight
sending = threading.Lock()  # held while a served response is being written
stop = threading.Event()  # set when the worker should leave
served = 0


# --- the control socket ----------------------------------------------------

def control(message, attempts=50):
    """POST /worker with a JSON message; retry while the socket is not up."""
    body = json.dumps(message).encode()
    request = (
        b"POST /worker HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body
    for _ in range(attempts):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(CONTROL)
                s.sendall(request)
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            head, _, payload = reply.partition(b"\r\n\r\n")
            if b"chunked" in head.lower():
                payload = b"".join(dechunk(payload))
            if b" 200 " not in head.split(b"\r\n", 1)[0] or not json.loads(payload).get("ok"):
                raise RuntimeError(f"control refused {message['op']}: {reply!r}")
            return
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.1)  # a bounded retry: the control socket is not up yet
    raise RuntimeError(f"control socket {CONTROL} not reachable")


def dechunk(data):
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return
        yield data[:size]
        data = data[size + 2:]


# --- HTTP/1.1 --------------------------------------------------------------

def read_request(f):
    """Returns (method, target, version, headers, body) or None at EOF."""
    line = f.readline(65536)
    if not line:
        return None
    method, target, version = line.decode("latin-1").split()
    headers = {}
    while (line := f.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while size := int(f.readline(65536).split(b";")[0], 16):
            body += f.read(size)
            f.readline()  # the CRLF after each chunk
        while f.readline(65536) not in (b"\r\n", b"\n", b""):
            pass  # trailers
    else:
        body = f.read(int(headers.get("content-length", 0)))
    return method, target, version, headers, body


def send_response(conn, status, body, content_type="text/plain", extra=()):
    reasons = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}
    head = [f"HTTP/1.1 {status} {reasons.get(status, 'Status')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            f"Rip-Worker-Id: {WORKER_ID}", *extra]
    conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


# --- the app -----------------------------------------------------------------

def app(method, target, body):
    path, _, query = target.partition("?")
    if path == "/ping":
        return 200, b"pong from python", "text/plain"
    if path == "/whoami":
        who = {"workerId": WORKER_ID, "pid": os.getpid(), "version": VERSION,
               "app": APP, "lang": "python", "served": served}
        return 200, json.dumps(who).encode(), "application/json"
    if path == "/sleep":
        ms = int(parse_qs(query).get("ms", ["0"])[0])
        time.sleep(ms / 1000)  # the route's behaviour: a handler that takes ms
        return 200, f"slept {ms}".encode(), "text/plain"
    if path == "/echo" and method == "POST":
        return 200, body, "application/octet-stream"
    if path == "/hold":
        print("holding", flush=True)
        sys.stdin.readline()
        return 200, b"released", "text/plain"
    return 404, b"not found", "text/plain"


def serve_connection(conn):
    with conn, conn.makefile("rb") as f:
        conn.settimeout(IDLE_TIMEOUT)
        try:
            while serve_one(conn, f):
                pass
        except (OSError, ValueError):
            pass  # idle timeout, reset or garbage: drop the connection


def serve_one(conn, f):
    """Serves one request; returns whether to keep the connection open."""
    global served
    request = read_request(f)
    if request is None:
        return False
    method, target, version, headers, body = request
    close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
    extra = ["Connection: close"] if close else []
    if stop.is_set() or not slot.acquire(blocking=False):
        send_response(conn, 503, b"worker busy", extra=["Rip-Worker-Busy: 1", *extra])
        return not close
    try:
        status, payload, content_type = app(method, target, body)
    except Exception as error:  # a bug in the app is a 500, not a stuck slot
        status, payload, content_type = 500, f"error: {error}".encode(), "text/plain"
    served += 1
    if MAX_REQUESTS and served >= MAX_REQUESTS:
        stop.set()  # recycle
    # Free the slot before the client can see the end of the response, or its
    # next request could find the slot still taken.
    sending.acquire()
    slot.release()
    try:
        send_response(conn, status, payload, content_type, extra)
    finally:
        sending.release()
    return not close


def accept_loop(listener):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return  # the listener was closed: we are leaving
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


def main():
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if os.path.exists(SOCKET):
        os.unlink(SOCKET)  # stale socket from an earlier run
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(SOCKET)
    os.chmod(SOCKET, 0o600)
    listener.listen(128)
    threading.Thread(target=accept_loop, args=(listener,), daemon=True).start()
    if CONTROL:
        control({"op": "join", "app": APP, "workerId": WORKER_ID,
                 "pid": os.getpid(), "socket": SOCKET, "version": VERSION})

    # Bounded waits keep the main thread, where Python runs signal
    # handlers, responsive; the stop itself is the event, not the timeout.
    while not stop.wait(0.2):
        pass
    if CONTROL:
        try:
            control({"op": "quit", "app": APP, "workerId": WORKER_ID, "pid": os.getpid()}, attempts=20)
        except Exception as error:  # a failed quit is not fatal
            print(f"py_worker: quit failed: {error}", file=sys.stderr)
    slot.acquire()  # wait for the request in flight; keep the slot for good
    sending.acquire()  # and for its response to be written
    listener.close()
    os.unlink(SOCKET)
    sys.exit(0)


if __name__ == "__main__":
    main()
