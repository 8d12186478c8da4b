#!/usr/bin/python3
"""bench/serving: takt's online inference next to its peers, measured in the same run.

Run with Debian's python3 (stdlib + numpy + xgboost):

  /usr/bin/python3 bench/serving/run.py [--takt build/takt] [--repeat 3] [--duration 10]
      [--only takt,flask,nginx] [--out bench/results/serving.md] [--note TEXT]

It builds the benchmark model (XGBoost binary:logistic, 500 trees, depth 6, 32
features f00..f31, seeded), starts the peers on loopback ports -- Flask under
gunicorn (2 sync workers), nginx serving a static JSON answer (the HTTP
ceiling) and a fresh takt server with the model imported, approved and
released to endpoint bench-dev -- checks that takt's prediction equals
xgboost's (through the Flask peer) to 1e-6, then measures with wrk (closed
loop, keep-alive) and an open-loop constant-rate client (build/bench/takt_openloop
from bench/openloop.cc when built, else openloop.py; --openloop picks one),
interleaving systems per round, and writes a markdown table of medians and the
goal ratios. Everything it starts runs in its own process group and is
stopped at the end, also on Ctrl-C or failure.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NFEAT = 32
FEATURES = ["f%02d" % i for i in range(NFEAT)]
GROUP = "bench"
ENDPOINT = GROUP + "-dev"
# The same model under a second group whose dev stage captures every request:
# capture at 0 vs 100 % through the whole server, at the same offered load.
CAPTURE_GROUP = "benchcap"
CAPTURE_ENDPOINT = CAPTURE_GROUP + "-dev"
# Its control: set up exactly the same way (same config shape, same release), capture 0.
CONTROL_GROUP = "benchnocap"
CONTROL_ENDPOINT = CONTROL_GROUP + "-dev"
TOLERANCE = 1e-6

# Goals the serving engine work refers to.
GOAL_FLASK_RATIO = 10.0
GOAL_NGINX_RATIO = 0.60
GOAL_P99_MS = 2.0
GOAL_CAPTURE_MEDIAN = 1.05  # capture at 100 % adds at most 5 % to median latency


class BenchError(Exception):
    pass


# `taskset -c LIST` prefixes for the servers (takt, gunicorn, nginx) and for the load generators (wrk, the
# open-loop client), from --server-cpus / --client-cpus; empty: the scheduler places everything.
SERVER_PIN = []
CLIENT_PIN = []
NGINX_WORKERS = [0]  # --nginx-workers; 0: one per server CPU


def nginx_workers():
    if NGINX_WORKERS[0]:
        return NGINX_WORKERS[0]
    return cpu_list_size(SERVER_PIN[-1]) if SERVER_PIN else os.cpu_count()


def cpu_list_size(spec):
    """How many CPUs a taskset list such as "0", "0,1" or "0-3" names."""
    n = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def log(msg):
    print("[serving-bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class Procs:
    """Children, each in its own session/process group; stopped by their ids."""

    def __init__(self):
        self.procs = []  # (name, Popen)

    def start(self, name, cmd, log_dir, env=None, cwd=None):
        out = open(log_dir / ("%s.out" % name), "wb")
        err = open(log_dir / ("%s.log" % name), "wb")
        p = subprocess.Popen(SERVER_PIN + list(cmd), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                             start_new_session=True)
        out.close()
        err.close()
        self.procs.append((name, p))
        log("started %s (pid %d): %s" % (name, p.pid, " ".join(str(c) for c in cmd)))
        return p

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is not None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.time() + 8
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log("%s (pid %d) did not stop on SIGTERM; SIGKILL" % (name, p.pid))
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        self.procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, method, path, body=b"", content_type=None, token=None, timeout=10, keep=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if token:
            headers["Authorization"] = "Bearer " + token
        c.request(method, path, body=body if method != "GET" else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        if keep is not None:
            keep.append(not r.will_close)
        return r.status, data
    finally:
        c.close()


def wait_until(what, fn, timeout, proc=None, log_file=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-3000:] if log_file and log_file.exists() else ""
            raise BenchError("%s: the process exited (%s)\n%s" % (what, proc.returncode, tail))
        try:
            v = fn()
            if v:
                return v
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.1)
    raise BenchError("%s: not ready after %ss (%s)" % (what, timeout, last))


def cmd_output(cmd, env=None):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unavailable (%s)" % e


# --------------------------------------------------------------------------- model and bodies


def build_model(work, rows, trees, seed, rebuild):
    import numpy as np
    import xgboost as xgb

    path = work / "model.json"
    meta_path = work / "model.meta.json"
    meta = {"rows": rows, "trees": trees, "seed": seed, "max_depth": 6, "features": NFEAT,
            "objective": "binary:logistic", "xgboost": xgb.__version__, "recipe": 2}
    if not rebuild and path.exists() and meta_path.exists():
        try:
            if json.loads(meta_path.read_text()) == meta:
                log("reusing %s (same recipe; --rebuild-model to retrain)" % path)
                return path
        except ValueError:
            pass
    log("training the benchmark model: %d rows, %d trees, depth 6, %d features" % (rows, trees, NFEAT))
    t = time.time()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, NFEAT)).astype(np.float32)
    w = rng.standard_normal(NFEAT)
    logit = 0.5 * (x @ w) + np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] + rng.standard_normal(rows)
    y = (logit > 0).astype(np.float32)
    d = xgb.DMatrix(x, label=y, feature_names=FEATURES)
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist",
              "min_child_weight": 0.1, "seed": seed, "nthread": os.cpu_count() or 1}
    booster = xgb.train(params, d, trees)
    booster.save_model(str(path))
    m = json.loads(path.read_text())
    tr = m["learner"]["gradient_booster"]["model"]["trees"]
    nodes = sum(int(t_["tree_param"]["num_nodes"]) for t_ in tr) / len(tr)
    meta_path.write_text(json.dumps(meta))
    log("model trained in %.0fs: %d trees, %.1f nodes per tree (a full depth-6 tree has 127)"
        % (time.time() - t, len(tr), nodes))
    return path


def model_stats(path):
    m = json.loads(path.read_text())
    tr = m["learner"]["gradient_booster"]["model"]["trees"]
    return len(tr), sum(int(t["tree_param"]["num_nodes"]) for t in tr) / len(tr)


def bench_rows(model_path, seed):
    """The bench row (4-decimal values, so every system parses the same text) and a sample."""
    import numpy as np
    import xgboost as xgb

    b = xgb.Booster()
    b.load_model(str(model_path))
    rng = np.random.default_rng(seed + 1)
    cand = np.round(rng.standard_normal((400, NFEAT)), 4)
    p = b.inplace_predict(cand.astype(np.float32))
    # A row whose score is well inside (0, 1), so the equality check means something.
    idx = [i for i in range(len(p)) if 0.25 <= p[i] <= 0.75]
    row = cand[idx[0] if idx else 0]
    return [float(v) for v in row], float(b.inplace_predict(row.reshape(1, -1).astype(np.float32))[0]), cand[:20]


def write_bodies(work, row):
    txt = ",".join("%.4f" % v for v in row)
    bodies = {
        "json": ('{"instances":[[%s]]}' % txt, "application/json"),
        "oip": ('{"inputs":[{"name":"input-0","shape":[1,%d],"datatype":"FP32","data":[%s]}]}' % (NFEAT, txt),
                "application/json"),
        "csv": (txt + "\n", "text/csv"),
    }
    out = {}
    for k, (body, ctype) in bodies.items():
        f = work / ("body-%s.txt" % k)
        f.write_text(body)
        out[k] = (f, ctype)
    return out


# --------------------------------------------------------------------------- peers


def start_flask(procs, work, model_path):
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", BENCH_MODEL=str(model_path), PYTHONDONTWRITEBYTECODE="1")
    p = procs.start("flask", ["/usr/bin/python3", "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:%d" % port,
                              "--chdir", str(HERE), "--log-level", "warning", "app:app"],
                    work / "logs", env=env)
    wait_until("flask+gunicorn", lambda: http_request(port, "GET", "/ping", timeout=2)[0] == 200, 120,
               proc=p, log_file=work / "logs" / "flask.log")
    return port


def start_nginx(procs, work):
    port = free_port()
    d = work / "nginx"
    if d.exists():
        shutil.rmtree(d)
    (d / "static").mkdir(parents=True)
    (d / "static" / "predictions.json").write_text('{"predictions":[0.123456789]}\n')
    conf = (HERE / "nginx.conf.in").read_text()
    conf = conf.replace("@USER@", "user root root;" if os.geteuid() == 0 else "")
    conf = conf.replace("@DIR@", str(d)).replace("@PORT@", str(port))
    # One worker per CPU the servers get (2 on the shared machine).
    conf = conf.replace("@WORKERS@", str(nginx_workers()))
    (d / "nginx.conf").write_text(conf)
    p = procs.start("nginx", ["nginx", "-p", str(d) + "/", "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")],
                    work / "logs")
    wait_until("nginx", lambda: http_request(port, "GET", "/predictions.json", timeout=2)[0] == 200, 30,
               proc=p, log_file=work / "logs" / "nginx.log")
    return port


class Takt:
    def __init__(self, binary, work, server_flags):
        self.bin = str(binary)
        self.dir = work / "takt"
        self.server_flags = server_flags  # extra `takt server` flags
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("TAKT_")}
        self.env.update(TAKT_DATA_DIR=str(self.dir / "data"), TAKT_CREDENTIALS_FILE=str(self.dir / "credentials"))
        self.port = None
        self.token = None  # the invoking principal's (a member of project bench)
        self.admin = None

    def cli(self, token, *args, want_json=True):
        env = dict(self.env)
        if token:
            env["TAKT_TOKEN"] = token
        if self.port:
            env["TAKT_URL"] = "http://127.0.0.1:%d" % self.port
        cmd = [self.bin] + list(args) + (["-o", "json"] if want_json else [])
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
        if r.returncode != 0:
            raise BenchError("takt %s failed (%d):\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return json.loads(r.stdout) if want_json else r.stdout

    def start(self, procs, work, model_path, sample_csv):
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        admin = self.cli(None, "init")["token"]
        args = [self.bin, "server", "--port", "0", "--log-level", "warn"]
        args += self.server_flags
        p = procs.start("takt", args, work / "logs", env=self.env)
        out = work / "logs" / "takt.out"

        def listening():
            m = re.search(r"^listening on http://[^:]+:(\d+)", out.read_text(), re.M)
            return int(m.group(1)) if m else None

        self.port = wait_until("takt server", listening, 60, proc=p, log_file=work / "logs" / "takt.log")
        user = self.cli(admin, "principal", "create", "bench-user", "--persona", "data-scientist")["token"]
        approver = self.cli(admin, "principal", "create", "bench-approver", "--persona", "approver")["token"]
        self.cli(admin, "project", "create", GROUP, "--member", "bench-user", "--description",
                 "bench/serving", want_json=False)
        self.cli(user, "model", "register", "--file", str(model_path), "--framework", "xgboost", "--group", GROUP,
                 "--project", GROUP, "--sample", str(sample_csv))
        self.cli(approver, "model", "approve", GROUP, "1", "--comment", "bench/serving", want_json=False)
        rel = self.cli(user, "release", "wait", GROUP, "--version", "1", "--timeout", "120")
        log("release of %s v1: %s (%s)" % (GROUP, rel.get("status"), rel.get("message", "")))

        def serving():
            eps = self.cli(user, "endpoint", "list")
            for e in eps if isinstance(eps, list) else eps.get("endpoints", []):
                if e.get("name") == ENDPOINT and e.get("status") == "InService":
                    return True
            return False

        wait_until("endpoint %s InService" % ENDPOINT, serving, 120, proc=p, log_file=work / "logs" / "takt.log")
        self.token = user
        self.admin = admin
        return self.port

    def start_capture_endpoints(self, model_path, sample_csv):
        """The same model under CAPTURE_GROUP (dev stage, default settings, capture 100 %) and under
        CONTROL_GROUP (the same, capture 0): the two differ in capture only."""
        engineer = self.cli(self.admin, "principal", "create", "bench-engineer", "--persona", "ml-engineer")["token"]
        approver = self.cli(self.admin, "principal", "create", "bench-cap-approver", "--persona",
                            "approver")["token"]
        self.cli(self.admin, "project", "add-member", GROUP, "bench-engineer", want_json=False)
        for group, percent in ((CAPTURE_GROUP, 100), (CONTROL_GROUP, 0)):
            cfg = self.dir / ("release-%s.yaml" % group)
            cfg.write_text("model_group: %s\nstages:\n  - name: dev\n    capture: %d\n"
                           "    gates:\n      - smoke_test: true\n" % (group, percent))
            # The group exists once its first version is registered; its config applies from the approval on.
            self.cli(self.token, "model", "register", "--file", str(model_path), "--framework", "xgboost",
                     "--group", group, "--project", GROUP, "--sample", str(sample_csv))
            self.cli(engineer, "release", "config", "put", str(cfg), want_json=False)
            self.cli(approver, "model", "approve", group, "1", "--comment", "bench/serving capture",
                     want_json=False)
            rel = self.cli(self.token, "release", "wait", group, "--version", "1", "--timeout", "120")
            log("release of %s v1: %s (%s)" % (group, rel.get("status"), rel.get("message", "")))
            endpoint = group + "-dev"

            def serving():
                eps = self.cli(self.token, "endpoint", "list")
                return any(e.get("name") == endpoint and e.get("status") == "InService"
                           for e in (eps if isinstance(eps, list) else eps.get("endpoints", [])))

            wait_until("endpoint %s InService" % endpoint, serving, 120)

    def captured_records(self):
        """takt_capture_records_total of the capture endpoint, from /metrics."""
        st, body = http_request(self.port, "GET", "/metrics", token=self.admin)
        if st != 200:
            raise BenchError("/metrics answered %d: %s" % (st, body[:300]))
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith("takt_capture_records_total{") and 'endpoint="%s"' % CAPTURE_ENDPOINT in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


# --------------------------------------------------------------------------- load

WRK_DIST = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def to_ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(url, target, conns, duration, threads, work, tag):
    env = dict(os.environ, BENCH_METHOD=target["method"], BENCH_BODY_FILE=str(target.get("body") or ""),
               BENCH_CONTENT_TYPE=target.get("ctype") or "", BENCH_TOKEN=target.get("token") or "")
    cmd = CLIENT_PIN + ["wrk", "-t%d" % min(threads, conns), "-c%d" % conns, "-d%ss" % duration, "--timeout", "2s", "--latency",
           "-s", str(HERE / "post.lua"), url]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    raw = r.stdout + r.stderr
    with open(work / "logs" / "wrk.txt", "a") as f:
        f.write("=== %s  %s\n%s\n" % (tag, " ".join(cmd), raw))
    m = re.search(r"^BENCH (.*)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise BenchError("wrk failed for %s (%d):\n%s" % (tag, r.returncode, raw))
    f = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    dist = {p: to_ms(v, u) for p, v, u in WRK_DIST.findall(r.stdout)}
    errors = int(f["connect"] + f["read"] + f["write"] + f["timeout"] + f["non2xx"])
    return {
        "rps": f["requests"] / (f["duration_us"] / 1e6),
        "requests": int(f["requests"]),
        "p50": f["p50_us"] / 1e3, "p90": f["p90_us"] / 1e3, "p99": f["p99_us"] / 1e3, "p999": f["p999_us"] / 1e3,
        "errors": errors,
        "error_detail": {k: int(f[k]) for k in ("connect", "read", "write", "timeout", "non2xx")},
        "wrk_dist_ms": dist,
    }


def openloop_client(path):
    """The command line that runs the open-loop client at path (C++ binary or openloop.py) and its
    description for the results."""
    path = Path(path).resolve()
    try:
        shown = str(path.relative_to(REPO))
    except ValueError:
        shown = str(path)
    if path.suffix == ".py":
        return [sys.executable, str(path)], "an open-loop constant-rate client in Python (`%s`)" % shown
    return [str(path)], "an open-loop constant-rate client in C++ (`%s`, from `bench/openloop.cc`: one thread, " \
        "epoll, the same flags and output as `bench/serving/openloop.py`)" % shown


def run_openloop(port, target, rate, conns, duration, work, tag, client):
    cmd = CLIENT_PIN + list(client) + ["--port", str(port), "--path", target["path"],
           "--method", target["method"], "--rate", "%.1f" % rate, "--duration", str(duration),
           "--connections", str(conns)]
    if target.get("body"):
        cmd += ["--body-file", str(target["body"]), "--content-type", target["ctype"]]
    if target.get("token"):
        cmd += ["--token", target["token"]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    with open(work / "logs" / "openloop.txt", "a") as f:
        f.write("=== %s rate %.1f\n%s%s\n" % (tag, rate, r.stdout, r.stderr))
    if r.returncode != 0:
        raise BenchError("open-loop client failed for %s:\n%s%s" % (tag, r.stdout, r.stderr))
    o = json.loads(r.stdout)
    errors = int(o["non2xx"] + o["unanswered"] + sum(o["errors"].values()))
    return {
        "rps": o["achieved_rate"], "target": rate, "requests": o["completed"],
        "p50": o["p50_us"] / 1e3, "p90": o["p90_us"] / 1e3, "p99": o["p99_us"] / 1e3, "p999": o["p999_us"] / 1e3,
        "errors": errors, "error_detail": dict(o["errors"], non2xx=o["non2xx"], unanswered=o["unanswered"]),
        "client_mean_lag_ms": o["client_mean_lag_ms"], "client_max_lag_ms": o["client_max_lag_ms"],
        "svc_p50": o["svc_p50_us"] / 1e3, "svc_p99": o["svc_p99_us"] / 1e3,
    }


# --------------------------------------------------------------------------- checks


def check_predictions(targets, expected_local):
    """takt's prediction for the bench row must equal xgboost's (the Flask peer's) to 1e-6."""
    got = {}
    for key, t in targets.items():
        keep = []
        if t["system"] == "nginx":
            st, body = http_request(t["port"], "GET", t["path"], keep=keep)
            t["keepalive"] = keep[0]
            if st != 200:
                raise BenchError("nginx answered %d to GET %s" % (st, t["path"]))
            continue
        st, body = http_request(t["port"], "POST", t["path"], t["body"].read_bytes(), t["ctype"], t.get("token"),
                                keep=keep)
        t["keepalive"] = keep[0]
        if st != 200:
            raise BenchError("%s answered %d to the bench request: %s" % (key, st, body[:500]))
        text = body.decode()
        if t["ctype"] == "text/csv":
            p = float(text.strip().splitlines()[0].split(",")[0])
        else:
            j = json.loads(text)
            p = float(j["outputs"][0]["data"][0]) if "outputs" in j else float(j["predictions"][0])
        got[key] = p
    reference_name = "flask" if "flask" in got else "xgboost (local)"
    reference = got.get("flask", expected_local)
    lines = ["prediction for the bench row: xgboost (local) %.9g" % expected_local]
    bad = []
    if abs(reference - expected_local) > TOLERANCE:
        bad.append("flask %.9g vs local xgboost %.9g" % (reference, expected_local))
    for key, p in sorted(got.items()):
        lines.append("  %-10s %.9g  (|Δ| vs %s = %.2g)" % (key, p, reference_name, abs(p - reference)))
        if abs(p - reference) > TOLERANCE:
            bad.append("%s %.9g vs %s %.9g" % (key, p, reference_name, reference))
    for line in lines:
        log(line)
    if bad:
        raise BenchError("PREDICTIONS DIFFER beyond %g: %s" % (TOLERANCE, "; ".join(bad)))
    return got, reference_name, reference


# --------------------------------------------------------------------------- report


def med(vals):
    return statistics.median(vals) if vals else float("nan")


def summarize(runs):
    return {
        "rps": med([r["rps"] for r in runs]),
        "p50": med([r["p50"] for r in runs]),
        "p90": med([r["p90"] for r in runs]),
        "p99": med([r["p99"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "n": len(runs),
        "target": med([r["target"] for r in runs]) if runs and "target" in runs[0] else None,
        "lag": max(r.get("client_mean_lag_ms", 0) for r in runs) if runs else 0,
        "svc_p99": med([r["svc_p99"] for r in runs]) if runs and "svc_p99" in runs[0] else None,
    }


def fmt(v, spec="%.2f"):
    return "—" if v is None or v != v else spec % v


def errors_cell(s):
    return "0" if s["errors"] == 0 else "**%d — ERRORS**" % s["errors"]


def goal_row(label, value_txt, goal_txt, ok, invalid):
    if invalid:
        status = "invalid (errors)"
    else:
        status = "—" if ok is None else ("met" if ok else "**not met**")
    return "| %s | %s | %s | %s |" % (label, value_txt, goal_txt, status)


def report(args, info, scenarios, results, preds, targets):
    L = []
    L.append("# Online inference: takt vs Flask + gunicorn vs nginx (static)")
    L.append("")
    if args.note:
        L.append("> %s" % args.note)
        L.append("")
    L.append("Generated by `/usr/bin/python3 bench/serving/run.py %s` on %s." % (" ".join(shlex.quote(a) for a in info["argv"]), info["date"]))
    L.append("")
    L.append("- Machine: %s cores (`nproc`), %s, kernel %s; load average %s before, %s after." % (
        info["nproc"], info["cpu"], info["kernel"], info["load_before"], info["load_after"]))
    if SERVER_PIN or CLIENT_PIN:
        L.append("- **Layout: separate CPUs.** Servers (takt, gunicorn, nginx) under `%s`, the load generators (wrk, "
                 "the open-loop client) under `%s`: neither waits for the other's CPU. takt sizes its event loops "
                 "to its affinity mask (one per CPU it may run on)." % (
                     " ".join(SERVER_PIN) or "no pinning", " ".join(CLIENT_PIN) or "no pinning"))
    else:
        L.append("- **Layout: shared CPUs.** The load generators and the servers share all cores; the scheduler "
                 "places them (a request's latency includes waiting for the server's thread to get a core back "
                 "from wrk).")
    L.append("- Versions: %s; %s; gunicorn %s, Flask %s; xgboost %s, numpy %s; takt `%s` (binary `%s`, "
             "source tree at commit %s)." % (info["wrk"], info["nginx"], info["gunicorn"], info["flask"],
                                             info["xgboost"], info["numpy"], info["takt_version"], info["takt_bin"],
                                             info["commit"]))
    L.append("- Model: XGBoost binary:logistic, %d trees, max_depth 6 (%.1f nodes per tree), %d features f00..f31, "
             "trained on %d seeded random rows." % (info["trees"], info["nodes"], NFEAT, args.rows))
    if any(k.startswith("takt") for k in preds[0]):
        L.append("- Prediction check before timing: takt (JSON, OIP v2, CSV) equals %s for the bench row to %g "
                 "(%.9g)." % (preds[1], TOLERANCE, preds[2]))
    L.append("- Peak: `wrk -t%d -cN -d%ss --timeout 2s --latency -s bench/serving/post.lua` (closed loop, keep-alive), "
             "%d round(s), systems interleaved per round, medians shown; percentiles from wrk's `done()` hook "
             "(`latency:percentile`), non-2xx counted in `response()`; warm-up %ss per target first."
             % (args.threads, args.duration, args.repeat, args.warmup))
    L.append("- Systems: **takt** endpoint `%s` (released to dev by the default release config on approval; "
             "invoked with the token of project member `bench-user`; server flags: %s); **flask** = gunicorn "
             "2 sync workers, `inplace_predict`, OMP_NUM_THREADS=1; **nginx** = %d worker(s), a static "
             "`{\"predictions\":[0.123456789]}` for `GET`, access log off, keep-alive on (the HTTP ceiling)."
             % (ENDPOINT, info["takt_flags"], nginx_workers()))
    closers = sorted({t["system"] for t in targets.values() if t.get("keepalive") is False})
    if closers:
        L.append("- %s closed the connection after the check request (no keep-alive%s), so wrk reconnects for "
                 "every request to it." % (", ".join(closers),
                                           ": gunicorn's sync workers do that" if "flask" in closers else ""))
    L.append("- 50 %% load: %s, not wrk's "
             "Lua `delay()`, which only adds whole-millisecond think time without a clock, at %d %% of the "
             "median peak req/s of the same protocol at %d connections measured just before, up to %d keep-alive "
             "connections; latency counted from each request's scheduled send time (no coordinated omission); "
             "each open-loop run starts after %d s of quiet, so background work a run before left (the capture "
             "writer draining its queue) does not fall into it."
             % (info["openloop"], int(args.load_fraction * 100), args.connections, args.connections, args.settle))
    L.append("")

    def table(title, keys, open_loop=False):
        nonlocal behind
        rows = [(k, results[k]) for k in keys if k in results and results[k]]
        if not rows:
            return
        if title:
            L.append("## " + title)
            L.append("")
        if open_loop:
            L.append("| system | request | target req/s | achieved req/s | p50 ms | p90 ms | p99 ms | service p99 ms | "
                     "client lag ms | errors | runs |")
            L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        else:
            L.append("| system | request | conns | req/s | p50 ms | p90 ms | p99 ms | errors | runs |")
            L.append("|---|---|---|---|---|---|---|---|---|")
        for k, runs in rows:
            s = summarize(runs)
            sc = scenarios[k]
            if open_loop:
                achieved = fmt(s["rps"], "%.0f")
                if s["target"] and s["rps"] < 0.95 * s["target"]:
                    achieved += " (**behind**)"
                    behind.append(k)
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    sc["system"], sc["label"], fmt(s["target"], "%.0f"), achieved, fmt(s["p50"]),
                    fmt(s["p90"]), fmt(s["p99"]), fmt(s["svc_p99"]), fmt(s["lag"]), errors_cell(s), s["n"]))
            else:
                L.append("| %s | %s | %d | %s | %s | %s | %s | %s | %d |" % (
                    sc["system"], sc["label"], sc["conns"], fmt(s["rps"], "%.0f"), fmt(s["p50"]), fmt(s["p90"]),
                    fmt(s["p99"]), errors_cell(s), s["n"]))
        if open_loop and behind and title:
            L.append("")
            L.append("**behind**: fewer than 95 %% of the scheduled requests were answered in time, i.e. the "
                     "offered load was not sustained (%s). With a small client lag the server fell behind (the "
                     "machine is shared); with a large one the client did." % ", ".join(behind))
        L.append("")

    behind = []
    c1, c2 = args.connections, args.connections_high
    table("Peak throughput, %d connections" % c1,
          ["takt-json-c%d" % c1, "takt-oip-c%d" % c1, "takt-csv-c%d" % c1, "flask-json-c%d" % c1,
           "nginx-static-c%d" % c1])
    table("Peak throughput, %d connections (where dynamic batching matters)" % c2,
          ["takt-json-c%d" % c2, "takt-oip-c%d" % c2, "takt-csv-c%d" % c2, "flask-json-c%d" % c2,
           "nginx-static-c%d" % c2])
    table("takt latency at %d %% of its peak (open loop, %d connections)" % (int(args.load_fraction * 100), c1),
          ["takt-json-half", "takt-oip-half", "takt-csv-half", "nginx-static-half"], open_loop=True)
    if results.get("nginx-static-half"):
        L.append("nginx (its static answer) runs at the JSON row's rate: the tail this machine gives any server "
                 "at that load. Open-loop tails here come mostly from stalls of the whole VM: a stall of a few "
                 "ms queues every request scheduled during it, while the service p99 (from the request's "
                 "actual send) stays low.")
        L.append("")
    if results.get("takt-jsoncap-half"):
        L.append("## Data capture at 0 vs 100 %")
        L.append("")
        L.append("Endpoints `%s` and `%s` serve the same model, released the same way (a dev-only release "
                 "config, default settings); they differ only in `capture: 100` vs `capture: 0` (every request's "
                 "input, output, inference id, variant and latency go to encrypted, rotated segments). `%s` "
                 "(default config, its release waiting at int) is shown for reference. Open loop at the same "
                 "offered load for all (%d %% of `%s`'s JSON peak); closed loop at %d connections. Records "
                 "captured during the measured runs, from `takt_capture_records_total`: %s for %s requests sent "
                 "(plus the warm-up's; a full ring drops, counted in `takt_capture_dropped_total`)."
                 % (CAPTURE_ENDPOINT, CONTROL_ENDPOINT, ENDPOINT, int(args.load_fraction * 100), ENDPOINT, c1,
                    info.get("captured", "?"), info.get("capture_requests", "?")))
        L.append("")
        table(None, ["takt-jsonnocap-half", "takt-jsoncap-half", "takt-json-half"], open_loop=True)
        table(None, ["takt-jsonnocap-c%d" % c1, "takt-jsoncap-c%d" % c1, "takt-json-c%d" % c1])
    pairs = info.get("capture_pairs") or []
    if pairs:
        L.append("Paired runs: %d pairs of %d s open-loop runs at %.0f req/s, capture 0 and 100 %% in ABBA order, "
                 "%d s of quiet before each; the goal below is the median of the per-pair p50 ratios."
                 % (len(pairs), args.capture_duration, pairs[0]["takt-jsoncap"]["target"], args.settle))
        L.append("")
        L.append("| pair | order | p50 ms off / on | ratio | p90 ms off / on | p99 ms off / on | errors |")
        L.append("|---|---|---|---|---|---|---|")
        for i, p in enumerate(pairs):
            off, on = p["takt-jsonnocap"], p["takt-jsoncap"]
            L.append("| %d | %s | %.3f / %.3f | %.2f× | %.2f / %.2f | %.2f / %.2f | %d |" % (
                i + 1, " → ".join(p["order"]), off["p50"], on["p50"], p["ratio"], off["p90"], on["p90"], off["p99"],
                on["p99"], off["errors"] + on["errors"]))
        L.append("| median | | %.3f / %.3f | %.2f× | %.2f / %.2f | %.2f / %.2f | |" % (
            med([p["takt-jsonnocap"]["p50"] for p in pairs]), med([p["takt-jsoncap"]["p50"] for p in pairs]),
            med([p["ratio"] for p in pairs]), med([p["takt-jsonnocap"]["p90"] for p in pairs]),
            med([p["takt-jsoncap"]["p90"] for p in pairs]), med([p["takt-jsonnocap"]["p99"] for p in pairs]),
            med([p["takt-jsoncap"]["p99"] for p in pairs])))
        L.append("")

    G = []
    for conns in (c1, c2):
        fl = results.get("flask-json-c%d" % conns)
        ng = results.get("nginx-static-c%d" % conns)
        for proto in ("json", "oip", "csv"):
            tk = results.get("takt-%s-c%d" % (proto, conns))
            if not tk:
                continue
            st = summarize(tk)
            name = scenarios["takt-%s-c%d" % (proto, conns)]["label"]
            if fl:
                sf = summarize(fl)
                r = st["rps"] / sf["rps"] if sf["rps"] else float("nan")
                G.append(goal_row("takt/flask req/s, %s, %d conns" % (name, conns), "%.1f×" % r,
                                  "≥ %g×" % GOAL_FLASK_RATIO, r >= GOAL_FLASK_RATIO, st["errors"] or sf["errors"]))
            if ng:
                sn = summarize(ng)
                r = st["rps"] / sn["rps"] if sn["rps"] else float("nan")
                # The same ratio within each round (the systems run seconds apart there), so a round the
                # shared machine slowed or sped up for one system is visible next to the ratio of medians.
                per_round = ["%.0f" % (100 * a["rps"] / b["rps"]) for a, b in zip(tk, ng) if b["rps"]]
                shown = "%.0f %%" % (100 * r)
                if len(per_round) > 1:
                    shown += " (rounds %s %%)" % "/".join(per_round)
                G.append(goal_row("takt/nginx req/s, %s, %d conns" % (name, conns), shown,
                                  "≥ %g %%" % (100 * GOAL_NGINX_RATIO), r >= GOAL_NGINX_RATIO,
                                  st["errors"] or sn["errors"]))
    for proto in ("json", "oip", "csv"):
        k = "takt-%s-c%d" % (proto, c1)
        if results.get(k):
            s = summarize(results[k])
            shown = "%.2f ms" % s["p99"]
            if results.get("nginx-static-c%d" % c1):
                shown += " (nginx %.2f ms)" % summarize(results["nginx-static-c%d" % c1])["p99"]
            G.append(goal_row("takt p99 at peak, %s, %d conns" % (scenarios[k]["label"], c1), shown,
                              "≤ %g ms" % GOAL_P99_MS, s["p99"] <= GOAL_P99_MS, s["errors"]))
    # Latency at half load is reported, not a goal (the issue asks for it to be reported).
    for proto in ("json", "oip", "csv"):
        k = "takt-%s-half" % proto
        if results.get(k):
            s = summarize(results[k])
            shown = "p50 %.2f ms, p99 %.2f ms" % (s["p50"], s["p99"])
            if proto == "json" and results.get("nginx-static-half"):
                n = summarize(results["nginx-static-half"])
                shown += " (nginx at the same rate: p50 %.2f ms, p99 %.2f ms)" % (n["p50"], n["p99"])
            G.append(goal_row("takt latency at %d %% load, %s" % (int(args.load_fraction * 100),
                                                                  scenarios[k]["label"]),
                              shown, "reported", None, s["errors"]))
    if pairs:
        r = med([p["ratio"] for p in pairs])
        G.append(goal_row("median latency, capture 100 %% / none, median of %d ABBA pairs at %.0f req/s"
                          % (len(pairs), pairs[0]["takt-jsoncap"]["target"]), "%.2f×" % r,
                          "≤ %.2f×" % GOAL_CAPTURE_MEDIAN, r <= GOAL_CAPTURE_MEDIAN,
                          sum(p["takt-jsoncap"]["errors"] + p["takt-jsonnocap"]["errors"] for p in pairs)))
    elif results.get("takt-jsoncap-half") and results.get("takt-jsonnocap-half"):
        off, on = summarize(results["takt-jsonnocap-half"]), summarize(results["takt-jsoncap-half"])
        r = on["p50"] / off["p50"] if off["p50"] else float("nan")
        G.append(goal_row("median latency, capture 100 %% / none, open loop at %.0f req/s" % off["target"],
                          "%.2f× (%.3f / %.3f ms)" % (r, on["p50"], off["p50"]), "≤ %.2f×" % GOAL_CAPTURE_MEDIAN,
                          r <= GOAL_CAPTURE_MEDIAN, on["errors"] or off["errors"]))
    if G:
        L.append("## Goals")
        L.append("")
        L.append("Ratios of medians; flask and nginx answer the same logical request (JSON one row; nginx its "
                 "static answer) at the same connection count.")
        L.append("")
        L.append("| line | value | goal | |")
        L.append("|---|---|---|---|")
        L.extend(G)
        L.append("")
    L.append("Raw wrk and open-loop output of this run: `%s/logs/`; all runs as JSON: `%s/results.json`."
             % (args.work, args.work))
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------- main


def resolve(p, default_rel):
    if p is None:
        return REPO / default_rel
    return Path(p).resolve()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--takt", default=None, help="takt binary (default build/takt of this repo)")
    ap.add_argument("--work", default="/tmp/takt-serving-bench", help="work dir (default %(default)s)")
    ap.add_argument("--out", default=None, help="results markdown (default bench/results/serving.md)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported (default 3)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target before round 1 (0: none)")
    ap.add_argument("--only", default="takt,flask,nginx", help="comma-separated subset of takt,flask,nginx")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    ap.add_argument("--connections-high", type=int, default=64, help="the high-concurrency run (default 64)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--load-fraction", type=float, default=0.5, help="open-loop rate as a fraction of peak (0.5)")
    ap.add_argument("--takt-http-threads", type=int, default=0, help="takt server --http-threads (default: takt's)")
    ap.add_argument("--takt-http-loops", type=int, default=0, help="takt server --http-loops (default: takt's)")
    ap.add_argument("--rows", type=int, default=20000, help="training rows of the model (default 20000)")
    ap.add_argument("--trees", type=int, default=500, help="trees (default 500)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rebuild-model", action="store_true", help="retrain even if the work dir has the model")
    ap.add_argument("--no-capture", action="store_true", help="skip the capture at 0 vs 100 %% scenarios")
    ap.add_argument("--settle", type=int, default=2, help="seconds of quiet before each open-loop run (default 2)")
    ap.add_argument("--capture-pairs", type=int, default=8, help="ABBA pairs of capture on/off runs (default 8)")
    ap.add_argument("--capture-duration", type=int, default=4, help="seconds per capture pair run (default 4)")
    ap.add_argument("--nginx-workers", type=int, default=0, help="nginx worker_processes (default: one per server CPU)")
    ap.add_argument("--server-cpus", default="", help="run the servers under `taskset -c LIST` (e.g. 0)")
    ap.add_argument("--client-cpus", default="", help="run wrk and the open-loop client under `taskset -c LIST` (e.g. 1)")
    ap.add_argument("--note", default="", help="a line for the results header")
    ap.add_argument("--openloop", default=None,
                    help="open-loop client: a takt_openloop binary or openloop.py (default build/bench/takt_openloop "
                         "of this repo if it exists, else bench/serving/openloop.py)")
    args = ap.parse_args()

    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {"takt", "flask", "nginx"}
    if unknown or not only:
        ap.error("--only takes takt, flask, nginx (got %s)" % args.only)
    for flag, spec, pin in (("--server-cpus", args.server_cpus, SERVER_PIN), ("--client-cpus", args.client_cpus, CLIENT_PIN)):
        if spec:
            if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", spec):
                ap.error("%s takes a CPU list such as 0, 0,1 or 0-3 (got %r)" % (flag, spec))
            pin[:] = ["taskset", "-c", spec]
    takt_bin = resolve(args.takt, "build/takt")
    NGINX_WORKERS[0] = args.nginx_workers
    takt_flags = []
    if args.takt_http_threads:
        takt_flags += ["--http-threads", str(args.takt_http_threads)]
    if args.takt_http_loops:
        takt_flags += ["--http-loops", str(args.takt_http_loops)]
    out_path = resolve(args.out, "bench/results/serving.md")
    work = Path(args.work).resolve()
    args.work = str(work)
    if str(work) in ("/", str(Path.home())):
        ap.error("--work must be a dedicated directory")
    if args.openloop is None:
        built = REPO / "build" / "bench" / "takt_openloop"
        openloop_path = built if os.access(built, os.X_OK) else HERE / "openloop.py"
    else:
        openloop_path = Path(args.openloop).resolve()
        if not openloop_path.is_file() or (openloop_path.suffix != ".py" and not os.access(openloop_path, os.X_OK)):
            ap.error("open-loop client %s not found or not executable" % openloop_path)
    openloop_cmd, openloop_desc = openloop_client(openloop_path)
    log("open-loop client: %s" % " ".join(openloop_cmd))
    if "takt" in only and not os.access(takt_bin, os.X_OK):
        ap.error("takt binary %s not found (build first, or --takt PATH)" % takt_bin)
    for tool in ["wrk"] + (["nginx"] if "nginx" in only else []):
        if not shutil.which(tool):
            ap.error("%s is not installed" % tool)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    if logs.exists():
        shutil.rmtree(logs)
    logs.mkdir()

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    import numpy
    import xgboost

    info = {
        "argv": sys.argv[1:], "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": cmd_output(["nproc"]), "kernel": platform.release(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "load_before": "%.2f" % os.getloadavg()[0],
        "wrk": cmd_output(["wrk", "-v"]).splitlines()[0].split(" Copyright")[0].strip(),
        "nginx": cmd_output(["nginx", "-v"]).replace("nginx version: ", ""),
        "gunicorn": re.sub(r".*version ([\d.]+).*", r"\1", cmd_output(["/usr/bin/python3", "-m", "gunicorn", "--version"])),
        "flask": cmd_output(["/usr/bin/python3", "-c", "import importlib.metadata as m; print(m.version('flask'))"]),
        "xgboost": xgboost.__version__, "numpy": numpy.__version__,
        "takt_bin": str(takt_bin),
        "takt_version": cmd_output([str(takt_bin), "--version"]) if "takt" in only else "—",
        "commit": cmd_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "takt_flags": "`%s`" % " ".join(takt_flags) if takt_flags else "defaults",
        "openloop": openloop_desc,
    }
    if "takt" in only:
        st = takt_bin.stat()
        info["takt_bin"] += ", mtime %s" % time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))

    model_path = build_model(work, args.rows, args.trees, args.seed, args.rebuild_model)
    info["trees"], info["nodes"] = model_stats(model_path)
    row, local_pred, sample = bench_rows(model_path, args.seed)
    bodies = write_bodies(work, row)
    sample_csv = work / "sample.csv"
    sample_csv.write_text(",".join(FEATURES) + "\n" + "\n".join(",".join("%.4f" % v for v in r) for r in sample) + "\n")

    procs = Procs()
    try:
        targets = {}
        if "flask" in only:
            port = start_flask(procs, work, model_path)
            targets["flask"] = {"system": "flask", "port": port, "path": "/invocations", "method": "POST",
                                "body": bodies["json"][0], "ctype": bodies["json"][1], "label": "JSON"}
        if "nginx" in only:
            port = start_nginx(procs, work)
            targets["nginx"] = {"system": "nginx", "port": port, "path": "/predictions.json", "method": "GET",
                                "label": "GET static JSON"}
        if "takt" in only:
            takt = Takt(takt_bin, work, takt_flags)
            port = takt.start(procs, work, model_path, sample_csv)
            for proto, path, label in (("json", "/endpoints/%s/invocations" % ENDPOINT, "JSON invocations"),
                                       ("oip", "/v2/models/%s/infer" % ENDPOINT, "OIP v2 infer"),
                                       ("csv", "/endpoints/%s/invocations" % ENDPOINT, "CSV invocations")):
                targets["takt-" + proto] = {"system": "takt", "port": port, "path": path, "method": "POST",
                                            "body": bodies[proto][0], "ctype": bodies[proto][1],
                                            "token": takt.token, "label": label}
            if not args.no_capture:
                takt.start_capture_endpoints(model_path, sample_csv)
                for key, endpoint, label in (("takt-jsoncap", CAPTURE_ENDPOINT, "JSON, `%s` (capture 100 %%)"),
                                             ("takt-jsonnocap", CONTROL_ENDPOINT, "JSON, `%s` (capture 0 %%)")):
                    targets[key] = {"system": "takt", "port": port, "path": "/endpoints/%s/invocations" % endpoint,
                                    "method": "POST", "body": bodies["json"][0], "ctype": bodies["json"][1],
                                    "token": takt.token, "label": label % endpoint}

        got, ref_name, ref = check_predictions(targets, local_pred)
        preds = (got, ref_name, ref)

        # Scenarios: closed-loop peaks at two connection counts, then takt's open-loop half load.
        scenarios = {}
        order = []
        for conns in (args.connections, args.connections_high):
            for tkey in ("takt-json", "flask", "nginx", "takt-oip", "takt-csv", "takt-jsoncap", "takt-jsonnocap"):
                if tkey not in targets or (tkey.startswith("takt-jsonc") or tkey.startswith("takt-jsonn")) \
                        and conns != args.connections:
                    continue
                t = targets[tkey]
                proto = {"flask": "json", "nginx": "static"}.get(tkey, tkey.split("-")[-1])
                key = "%s-%s-c%d" % (t["system"], proto, conns)
                scenarios[key] = dict(t, conns=conns, kind="wrk", target=tkey)
                order.append(key)
        for tkey in ("takt-json", "takt-oip", "takt-csv"):
            if tkey in targets:
                key = "%s-half" % tkey
                scenarios[key] = dict(targets[tkey], conns=args.connections, kind="open",
                                      peak="%s-c%d" % (tkey, args.connections), target=tkey)
                order.append(key)
        if "nginx" in targets and "takt-json" in targets:
            # The machine's own tail at that load: nginx's static answer at takt-json-half's rate.
            scenarios["nginx-static-half"] = dict(targets["nginx"], conns=args.connections, kind="open",
                                                  peak="takt-json-c%d" % args.connections, target="nginx")
            order.append("nginx-static-half")
        for tkey in ("takt-jsoncap", "takt-jsonnocap"):
            if tkey in targets:
                # The same offered load as takt-json-half: half of the JSON peak of bench-dev.
                scenarios[tkey + "-half"] = dict(targets[tkey], conns=args.connections, kind="open",
                                                 peak="takt-json-c%d" % args.connections, target=tkey)
                order.append(tkey + "-half")
        results = {k: [] for k in order}

        if args.warmup > 0:
            for tkey, t in targets.items():
                log("warm-up %s (%ss)" % (tkey, args.warmup))
                run_wrk("http://127.0.0.1:%d%s" % (t["port"], t["path"]), t, args.connections, args.warmup,
                        args.threads, work, "warmup " + tkey)

        # Rounds: every scenario once per round; within a group of the same kind and connection
        # count the systems' order rotates from round to round, so noise spreads over all of them.
        groups = []
        for k in order:
            sc = scenarios[k]
            gk = (sc["kind"], sc["conns"])
            if not groups or groups[-1][0] != gk:
                groups.append((gk, []))
            groups[-1][1].append(k)
        for rnd in range(args.repeat):
            for _, keys in groups:
                n = len(keys)
                for k in keys[rnd % n:] + keys[:rnd % n]:
                    sc = scenarios[k]
                    tag = "round %d %s" % (rnd + 1, k)
                    if sc["kind"] == "wrk":
                        r = run_wrk("http://127.0.0.1:%d%s" % (sc["port"], sc["path"]), sc, sc["conns"],
                                    args.duration, args.threads, work, tag)
                    else:
                        peak = med([x["rps"] for x in results[sc["peak"]]])
                        rate = max(1.0, args.load_fraction * peak)
                        time.sleep(args.settle)
                        r = run_openloop(sc["port"], sc, rate, sc["conns"], args.duration, work, tag, openloop_cmd)
                        if r["rps"] < 0.95 * rate:
                            log("  note: %s achieved %.0f of %.0f req/s" % (k, r["rps"], rate))
                    results[k].append(r)
                    log("%s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d%s" % (
                        tag, r["rps"], r["p50"], r["p99"], r["errors"],
                        " %s" % r["error_detail"] if r["errors"] else ""))
        # Capture on vs off in ABBA pairs of short open-loop runs at the same rate, each after a quiet
        # spell: slow drifts of this shared machine hit both halves of a pair alike, and the goal is the
        # median of the per-pair ratios.
        pairs = []
        if "takt-jsoncap" in targets and "takt-jsonnocap" in targets and args.capture_pairs > 0:
            rate = max(1.0, args.load_fraction * med([x["rps"] for x in results["takt-json-c%d" % args.connections]]))
            for i in range(args.capture_pairs):
                keys = ("takt-jsonnocap", "takt-jsoncap") if i % 2 == 0 else ("takt-jsoncap", "takt-jsonnocap")
                pair = {"order": [k.split("-")[-1] for k in keys]}
                for tkey in keys:
                    time.sleep(args.settle)
                    sc = scenarios[tkey + "-half"]
                    pair[tkey] = run_openloop(sc["port"], sc, rate, sc["conns"], args.capture_duration, work,
                                              "capture pair %d %s" % (i + 1, tkey), openloop_cmd)
                on, off = pair["takt-jsoncap"], pair["takt-jsonnocap"]
                pair["ratio"] = on["p50"] / off["p50"] if off["p50"] else float("nan")
                log("capture pair %d (%s): p50 %.3f / %.3f ms = %.2fx, p99 %.2f / %.2f ms" % (
                    i + 1, " then ".join(pair["order"]), on["p50"], off["p50"], pair["ratio"], on["p99"], off["p99"]))
                pairs.append(pair)
        info["capture_pairs"] = pairs
        info["load_after"] = "%.2f" % os.getloadavg()[0]
        if "takt-jsoncap" in targets:
            info["captured"] = takt.captured_records()
            info["capture_requests"] = sum(r["requests"] for k in ("takt-jsoncap-c%d" % args.connections,
                                                                   "takt-jsoncap-half") for r in results.get(k, [])) + \
                sum(p["takt-jsoncap"]["requests"] for p in pairs)
            info["warmup_requests"] = "%d s of warm-up" % args.warmup if args.warmup > 0 else "none"
        (work / "results.json").write_text(json.dumps(
            {"info": info, "scenarios": {k: {kk: str(vv) for kk, vv in v.items() if kk != "token"}
                                         for k, v in scenarios.items()}, "results": results}, indent=1))
        md = report(args, info, scenarios, results, preds, targets)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(md)
        print(md)
        log("wrote %s" % out_path)
        return 0
    except BenchError as e:
        log("FAILED: %s" % e)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        sys.exit(130)
