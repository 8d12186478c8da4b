"""Open-loop constant-rate HTTP/1.1 load for bench/serving/run.py (stdlib only).

wrk is closed-loop: a connection sends its next request when the previous one
answered, and its Lua delay() hook only adds a think time in whole
milliseconds, with no wall clock to keep a schedule. This client keeps one:
request i is due at t0 + i/rate whatever happened before. It goes out on an
idle keep-alive connection (at most --connections), else waits in a FIFO
until one frees up. Latency is measured from the scheduled time (so queueing
behind a slow answer counts: no coordinated omission), and also from the
moment the request was written ("service" latency).

The client runs in one Python thread; it reports how far behind schedule it
fell and the rate it achieved, so a run where the client, not the server, was
the limit is visible (run.py flags it).

  openloop.py --host 127.0.0.1 --port P --path /x --body-file F --content-type T \
      --token TOK --rate R --duration S --connections C
prints one JSON object on stdout.
"""

import argparse
import collections
import errno
import json
import selectors
import socket
import sys
import time


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


class Conn:
    __slots__ = ("sock", "buf", "busy", "sched", "sent_at", "need", "status", "hdr_end", "keep")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.busy = False
        self.sched = 0.0
        self.sent_at = 0.0
        self.need = -1
        self.status = 0
        self.hdr_end = -1
        self.keep = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", required=True)
    ap.add_argument("--method", default="POST")
    ap.add_argument("--body-file", default="")
    ap.add_argument("--content-type", default="")
    ap.add_argument("--token", default="")
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds of scheduled sends")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--drain", type=float, default=5.0, help="seconds to wait for answers after the last send")
    a = ap.parse_args()

    body = open(a.body_file, "rb").read() if a.body_file else b""
    head = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (a.method, a.path, a.host, a.port)
    if a.content_type:
        head += "Content-Type: %s\r\n" % a.content_type
    if a.token:
        head += "Authorization: Bearer %s\r\n" % a.token
    if body or a.method == "POST":
        head += "Content-Length: %d\r\n" % len(body)
    request = head.encode() + b"\r\n" + body

    sel = selectors.DefaultSelector()
    conns = []
    idle = collections.deque()
    errors = {"connect": 0, "read": 0, "write": 0}

    def open_conn():
        s = socket.create_connection((a.host, a.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = Conn(s)
        sel.register(s, selectors.EVENT_READ, c)
        conns.append(c)
        return c

    def drop(c):
        try:
            sel.unregister(c.sock)
        except Exception:
            pass
        c.sock.close()
        if c in conns:
            conns.remove(c)
        try:
            idle.remove(c)
        except ValueError:
            pass

    for _ in range(a.connections):
        try:
            idle.append(open_conn())
        except OSError:
            errors["connect"] += 1
    if not conns:
        print(json.dumps({"error": "could not connect"}))
        return 1

    total = int(a.rate * a.duration)
    interval = 1.0 / a.rate
    backlog = collections.deque()
    lat, svc = [], []
    status_bad = 0
    completed = 0
    next_i = 0
    max_lag = 0.0
    lag_sum = 0.0
    t0 = time.perf_counter() + 0.05
    end_by = t0 + a.duration + a.drain

    def send(c, sched):
        now = time.perf_counter()
        c.busy = True
        c.sched = sched
        c.sent_at = now
        c.buf = b""
        c.need = -1
        c.hdr_end = -1
        try:
            n = c.sock.send(request)
            if n != len(request):  # tiny request, should not happen; finish blocking
                c.sock.setblocking(True)
                c.sock.sendall(request[n:])
                c.sock.setblocking(False)
        except OSError:
            errors["write"] += 1
            drop(c)
            return False
        return True

    def dispatch(sched):
        while idle:
            c = idle.popleft()
            if send(c, sched):
                return True
        if len(conns) < a.connections:
            try:
                c = open_conn()
            except OSError:
                errors["connect"] += 1
                return False
            return send(c, sched)
        return False

    while True:
        now = time.perf_counter()
        # Hand out every request that is due.
        while next_i < total and t0 + next_i * interval <= now:
            sched = t0 + next_i * interval
            lag = now - sched  # how late the client noticed it was due: the client's own limit
            lag_sum += lag
            if lag > max_lag:
                max_lag = lag
            backlog.append(sched)
            next_i += 1
        while backlog and (idle or len(conns) < a.connections):
            if not dispatch(backlog[0]):
                break
            backlog.popleft()
        busy = sum(1 for c in conns if c.busy)
        if next_i >= total and not backlog and busy == 0:
            break
        if now > end_by:
            break
        timeout = (t0 + next_i * interval - now) if next_i < total else 0.05
        for key, _ in sel.select(timeout=max(0.0, min(timeout, 0.05))):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                if c.busy:
                    errors["read"] += 1
                drop(c)
                continue
            c.buf += data
            if c.hdr_end < 0:
                i = c.buf.find(b"\r\n\r\n")
                if i < 0:
                    continue
                c.hdr_end = i + 4
                lines = c.buf[:i].split(b"\r\n")
                try:
                    c.status = int(lines[0].split()[1])
                except (IndexError, ValueError):
                    c.status = 0
                c.need = 0
                c.keep = True
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        c.need = int(v.strip())
                    elif k == b"connection" and v.strip().lower() == b"close":
                        c.keep = False
            if len(c.buf) - c.hdr_end < c.need:
                continue
            done_at = time.perf_counter()
            lat.append(done_at - c.sched)
            svc.append(done_at - c.sent_at)
            completed += 1
            if not 200 <= c.status <= 299:
                status_bad += 1
            c.busy = False
            if c.keep:
                idle.append(c)
            else:
                drop(c)

    elapsed = time.perf_counter() - t0
    unanswered = total - completed
    for c in list(conns):
        drop(c)
    lat.sort()
    svc.sort()
    out = {
        "target_rate": a.rate,
        "scheduled": total,
        "completed": completed,
        "unanswered": unanswered,
        "achieved_rate": completed / elapsed if elapsed > 0 else 0.0,
        "non2xx": status_bad,
        "errors": errors,
        "connections": a.connections,
        "client_max_lag_ms": max_lag * 1e3,
        "client_mean_lag_ms": (lag_sum / max(1, next_i)) * 1e3,
        "p50_us": percentile(lat, 50) * 1e6,
        "p90_us": percentile(lat, 90) * 1e6,
        "p99_us": percentile(lat, 99) * 1e6,
        "p999_us": percentile(lat, 99.9) * 1e6,
        "max_us": (lat[-1] if lat else float("nan")) * 1e6,
        "svc_p50_us": percentile(svc, 50) * 1e6,
        "svc_p99_us": percentile(svc, 99) * 1e6,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
