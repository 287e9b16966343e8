#!/usr/bin/env python3
"""amp's fault suite: `make faults` (full) and its quick part in `make test`.

Each fault runs against the built binaries and a real PostgreSQL, in throwaway amp dirs under
a private temporary directory, and prints one line: `fault NAME: ok|FAILED — figures`. The
last line is `faults: N passed, N failed` (and `, N skipped` for the root-only faults when not
root). Exit status 1 when any failed.

It never signals a process it did not start: PostgreSQL processes are found through the
postmaster.pid of an amp dir this suite made, and checked by /proc/PID/cmdline before a signal.

Usage: faults.py --bin DIR [--quick] [--only NAME,...] [--root-user USER]
  --bin        the directory of ampd and ampctl (swift build --show-bin-path)
  --quick      fewer rounds (the part `make test` runs)
  --only       run only these faults
  --root-user  run as root: the faults that need root (a full disk on a small tmpfs) run here,
               and ampd runs as USER for them (PostgreSQL refuses root); the others are skipped
"""
import argparse
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# --- libpq through ctypes: each acknowledged commit is known exactly -------------------------

_pq = None


def libpq():
    global _pq
    if _pq is None:
        _pq = ctypes.CDLL("libpq.so.5")
        _pq.PQconnectdb.restype = ctypes.c_void_p
        _pq.PQconnectdb.argtypes = [ctypes.c_char_p]
        _pq.PQstatus.argtypes = [ctypes.c_void_p]
        _pq.PQexec.restype = ctypes.c_void_p
        _pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _pq.PQresultStatus.argtypes = [ctypes.c_void_p]
        _pq.PQgetvalue.restype = ctypes.c_char_p
        _pq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        _pq.PQntuples.argtypes = [ctypes.c_void_p]
        _pq.PQclear.argtypes = [ctypes.c_void_p]
        _pq.PQfinish.argtypes = [ctypes.c_void_p]
        _pq.PQerrorMessage.restype = ctypes.c_char_p
        _pq.PQerrorMessage.argtypes = [ctypes.c_void_p]
    return _pq


class PG:
    """One libpq connection; exec returns rows (lists of str) or raises RuntimeError."""

    def __init__(self, url):
        pq = libpq()
        self.conn = pq.PQconnectdb(url.encode())
        if pq.PQstatus(self.conn) != 0:
            msg = pq.PQerrorMessage(self.conn).decode(errors="replace").strip()
            pq.PQfinish(self.conn)
            self.conn = None
            raise RuntimeError(msg)

    def exec(self, sql):
        pq = libpq()
        res = pq.PQexec(self.conn, sql.encode())
        status = pq.PQresultStatus(res)
        if status not in (1, 2):  # PGRES_COMMAND_OK, PGRES_TUPLES_OK
            msg = pq.PQerrorMessage(self.conn).decode(errors="replace").strip()
            pq.PQclear(res)
            raise RuntimeError(msg)
        rows = [[pq.PQgetvalue(res, i, 0).decode()] for i in range(pq.PQntuples(res))]
        pq.PQclear(res)
        return rows

    def close(self):
        if self.conn:
            libpq().PQfinish(self.conn)
            self.conn = None


def query(url, sql):
    c = PG(url)
    try:
        return c.exec(sql)
    finally:
        c.close()


# --- driving ampd ------------------------------------------------------------------------------

class Ampd:
    """`ampd run` for one amp dir, with its output collected."""

    def __init__(self, suite, base, args=(), env=None, preexec=None, user=None):
        self.base = base
        self.lines = []
        self.url = None
        self.user = user
        e = suite.env(base)
        e.update(env or {})
        cmd = [suite.ampd, "run", "--amp-dir", base] + list(args)
        if user:
            cmd = ["runuser", "-u", user, "--"] + ["env"] + [f"{k}={v}" for k, v in e.items()] + cmd
            e = None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e,
                                     preexec_fn=preexec, text=True, errors="replace")
        suite.started.append(self.proc)
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith("ready in "):
                self.url = line.split(": ", 1)[1].split(" ", 1)[0]
                if self.user and "&user=" not in self.url:
                    self.url += "&user=" + self.user  # the suite runs as root, the server as USER
                self.ready.set()

    def wait_ready(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.ready.wait(0.05):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return self.ready.is_set()
        return False

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def socket(self):
        return self.base + "/run/amp/" + os.path.basename(self.base) + "/io.amp.Metadb"

    def postmaster(self):
        """The postmaster PID of this amp dir, checked to be a postgres process on this data dir."""
        return postmaster_of(self.base + "/.amp/metadb")


def postmaster_of(datadir):
    try:
        with open(datadir + "/postmaster.pid") as f:
            pid = int(f.readline())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
    except (OSError, ValueError):
        return None
    if not cmd or not cmd[0].endswith(b"postgres") or datadir.encode() not in cmd:
        return None
    return pid


def varlink_call(path, method, params=None, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    import json
    s.sendall(json.dumps({"method": method, "parameters": params or {}}).encode() + b"\0")
    buf = read_message(s)
    s.close()
    return json.loads(buf.rstrip(b"\0") or b"{}")


def read_message(s):
    """One NUL-terminated varlink message (or what came before the peer closed or timed out)."""
    buf = b""
    try:
        while not buf.endswith(b"\0"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    return buf


def varlink_call_as(user, path, method):
    """varlink_call as USER (the server admits only its own UID), from root."""
    import json
    import pwd
    pw = pwd.getpwnam(user)

    def become():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    code = ("import json, socket; s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(%r); "
            "s.sendall(json.dumps({'method': %r, 'parameters': {}}).encode() + bytes(1)); b = b''\n"
            "while not b.endswith(bytes(1)):\n c = s.recv(65536)\n if not c: break\n b += c\n"
            "print(b.rstrip(bytes(1)).decode())") % (path, method)
    p = subprocess.run(["/usr/bin/python3", "-c", code], preexec_fn=become, capture_output=True, text=True, timeout=30)
    try:
        return json.loads(p.stdout or "{}")
    except ValueError:
        return {}


def settle(pid, threads, timeout=10):
    """Waits until the process is back to `threads` threads (its connections wound down)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(f"/proc/{pid}/status") as f:
            n = next((int(l.split()[1]) for l in f if l.startswith("Threads:")), 0)
        if n <= threads:
            break
        time.sleep(0.1)
    time.sleep(0.2)


def thread_count(pid):
    with open(f"/proc/{pid}/status") as f:
        return next((int(l.split()[1]) for l in f if l.startswith("Threads:")), 0)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the suite ---------------------------------------------------------------------------------

class Suite:
    def __init__(self, args):
        self.ampd = os.path.join(args.bin, "ampd")
        self.ampd_source = self.ampd
        self.quick = args.quick
        self.root_user = args.root_user
        self.tmp = tempfile.mkdtemp(prefix="amp-faults.", dir="/tmp")
        os.chmod(self.tmp, 0o755)
        if self.root_user:
            # The account must reach the binary, wherever root's checkout is.
            shutil.copy2(self.ampd, self.tmp + "/ampd")
            self.ampd = self.tmp + "/ampd"
        self.started = []
        self.results = []

    def env(self, base):
        run = base + "/run"
        os.makedirs(run, mode=0o700, exist_ok=True)
        if self.root_user:
            shutil.chown(run, self.root_user)
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
                "NO_COLOR": "1", "XDG_RUNTIME_DIR": run, "XDG_CACHE_HOME": self.tmp + "/cache", "LANG": "C.UTF-8"}

    def project(self, name):
        base = os.path.join(self.tmp, name)
        os.makedirs(base, exist_ok=True)
        if self.root_user:
            shutil.chown(base, self.root_user)
        return base

    def record(self, name, ok, figures):
        self.results.append(ok)
        print(f"fault {name}: {'ok' if ok else 'FAILED'} — {figures}", flush=True)

    def cleanup(self):
        for p in self.started:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # 1. Postmaster SIGKILL under a one-connection insert load: acknowledged commits lost.
    def commit_loss(self):
        rounds = 3 if self.quick else 20
        for profile in ("dev", "durable"):
            base = self.project("loss-" + profile)
            d = Ampd(self, base, ["--profile", profile])
            if not d.wait_ready():
                self.record(f"commit-loss[{profile}]", False, "ampd did not start: " + d.text[-500:])
                continue
            query(d.url, "CREATE TABLE t (id bigint PRIMARY KEY)")
            acked, next_id, recoveries = [], 1, []
            for _ in range(rounds):
                stop = threading.Event()

                def writer():
                    nonlocal next_id
                    try:
                        c = PG(d.url)
                    except RuntimeError:
                        return
                    try:
                        while not stop.is_set():
                            c.exec(f"INSERT INTO t VALUES ({next_id})")
                            acked.append(next_id)  # acknowledged: COMMIT returned
                            next_id += 1
                    except RuntimeError:
                        next_id += 1  # the one in flight may or may not have committed
                    finally:
                        c.close()

                w = threading.Thread(target=writer)
                w.start()
                # Each round serves for more than RestartPolicy.stableAfter (1 s), as a crash
                # after real service is what this measures; quicker crashes are a crash loop,
                # which ampd backs off from (and gives up on after 8 in a row) by design.
                time.sleep(random.uniform(1.1, 2.0))
                pid = d.postmaster()
                killed = time.time()
                if pid:
                    os.kill(pid, signal.SIGKILL)
                stop.set()
                w.join(30)
                # Served again (ampd restarts it), then the next round.
                deadline = time.time() + 30
                while time.time() < deadline:
                    p = d.postmaster()
                    if p and p != pid:
                        try:
                            query(d.url, "SELECT 1")
                            break
                        except RuntimeError:
                            pass
                    time.sleep(0.05)
                recoveries.append(time.time() - killed)
            ids = {int(r[0]) for r in query(d.url, "SELECT id FROM t")}
            lost = sum(1 for i in acked if i not in ids)
            total = len(acked)
            d.stop()
            self.record(f"commit-loss[{profile}]", lost == 0 and d.proc.returncode == 0,
                        f"{rounds} postmaster SIGKILLs under insert load, {total} acknowledged commits, {lost} lost; "
                        f"recovery max {max(recoveries):.2f} s, median {sorted(recoveries)[len(recoveries) // 2]:.2f} s")

    # 2. ampd SIGKILL: no postgres outlives it; the next start serves the same data.
    def ampd_sigkill(self):
        base = self.project("ampd-kill")
        d = Ampd(self, base)
        ok = d.wait_ready()
        query(d.url, "CREATE TABLE kept AS SELECT 42 AS v")
        pid = d.postmaster()
        d.proc.kill()
        d.proc.wait()
        t0 = time.time()
        while pid and os.path.exists(f"/proc/{pid}") and time.time() - t0 < 10:
            time.sleep(0.02)
        gone = time.time() - t0
        survived = pid is not None and os.path.exists(f"/proc/{pid}")
        d2 = Ampd(self, base)
        ok = ok and not survived and d2.wait_ready() and query(d2.url, "SELECT v FROM kept") == [["42"]]
        d2.stop()
        self.record("ampd-sigkill", ok, f"postmaster gone {gone:.2f} s after ampd's SIGKILL; next start serves the data")

    # 3. A hung postmaster (SIGSTOP): ampd's API keeps answering.
    def hung_postmaster(self):
        base = self.project("hung")
        d = Ampd(self, base)
        ok = d.wait_ready()
        pid = d.postmaster()
        os.kill(pid, signal.SIGSTOP)
        try:
            t0 = time.time()
            reply = varlink_call(d.socket, "io.amp.Metadb.GetStatus", timeout=5)
            took = time.time() - t0
            ok = ok and "status" in reply.get("parameters", {}) and took < 2
        finally:
            os.kill(pid, signal.SIGCONT)
        ok = ok and query(d.url, "SELECT 1") == [["1"]]
        d.stop()
        self.record("hung-postmaster", ok, f"GetStatus answered in {took * 1000:.0f} ms while the postmaster was stopped")

    # 4. Concurrent starts on one amp dir: exactly one wins, the others exit 75 naming it.
    def concurrent_starts(self):
        base = self.project("concurrent")
        ds = [Ampd(self, base) for _ in range(8)]
        time.sleep(0.2)
        deadline = time.time() + 60
        while time.time() < deadline and sum(1 for d in ds if d.proc.poll() is None) > 1:
            time.sleep(0.05)
        running = [d for d in ds if d.proc.poll() is None]
        losers = [d for d in ds if d.proc.poll() is not None]
        ok = len(running) == 1 and running[0].wait_ready() and all(
            d.proc.returncode == 75 and "in use by ampd (PID" in d.text for d in losers)
        for d in running:
            d.stop()
        self.record("concurrent-starts", ok, f"8 starts: {len(running)} ran, {sum(1 for d in losers if d.proc.returncode == 75)} exited 75 naming the holder")

    # 5. A stale postmaster.pid naming an unrelated live process: never signalled.
    def stale_pid(self):
        base = self.project("stale")
        d = Ampd(self, base)
        ok = d.wait_ready()
        d.stop()
        bystander = subprocess.Popen(["sleep", "60"])
        self.started.append(bystander)
        with open(base + "/.amp/metadb/postmaster.pid", "w") as f:
            f.write(f"{bystander.pid}\n{base}/.amp/metadb\n0\n5432\n\n\n\n")
        d2 = Ampd(self, base)
        ok = ok and d2.wait_ready() and bystander.poll() is None
        d2.stop()
        bystander.kill()
        bystander.wait()
        self.record("stale-pid", ok, f"postmaster.pid naming an unrelated live process (sleep, PID {bystander.pid}): left alone, server started")

    # 6. Bad input: every kind of bad value is a one-line error with a distinct code, nothing touched.
    def bad_input(self):
        deep = "[" * 5000
        cases = [
            # (name, config.toml text or None, extra args, env, expected exit, text the message names)
            ("flag start-timeout overflow", None, ["--start-timeout", "99999999999999999999s"], {}, 64, "--start-timeout"),
            ("flag stop-timeout too long", None, ["--stop-timeout", "25h"], {}, 64, "--stop-timeout"),
            ("flag memory overflow", None, ["--memory", "9223372036854775807GB"], {}, 64, "--memory"),
            ("flag memory too small", None, ["--memory", "1MB"], {}, 64, "--memory"),
            ("flag cpus overflow", None, ["--cpus", "99999999999999999999"], {}, 64, "cpus"),
            ("flag cpus zero", None, ["--cpus", "0"], {}, 64, "--cpus"),
            ("flag profile", None, ["--profile", "fast"], {}, 64, "--profile"),
            ("flag parameter", None, ["-c", "1x=2"], {}, 64, "--set"),
            ("flag log level", None, ["--log-level", "loud"], {}, 64, "--log-level"),
            ("flag log target", None, ["--log-target", "syslog"], {}, 64, "--log-target"),
            ("flag instance name", None, ["--instance", "../x"], {}, 64, "--instance"),
            ("flag unknown", None, ["--no-such-flag"], {}, 64, "--no-such-flag"),
            ("env start timeout overflow", None, [], {"AMP_PG_START_TIMEOUT": "99999999999999999999s"}, 78, "AMP_PG_START_TIMEOUT"),
            ("env memory overflow", None, [], {"AMP_PG_MEMORY": "9223372036854775807GB"}, 78, "AMP_PG_MEMORY"),
            ("env cpus", None, [], {"AMP_PG_CPUS": "-1"}, 78, "AMP_PG_CPUS"),
            ("env profile", None, [], {"AMP_PG_PROFILE": "x"}, 78, "AMP_PG_PROFILE"),
            ("env template cache", None, [], {"AMP_PG_TEMPLATE_CACHE": "maybe"}, 78, "AMP_PG_TEMPLATE_CACHE"),
            ("env empty", None, [], {"AMP_PG_LOCALE": ""}, 78, "AMP_PG_LOCALE"),
            ("env parameter name", None, [], {"AMP_PG_PARAM_1x": "1"}, 78, "AMP_PG_PARAM_1x"),
            ("file start_timeout overflow", '[postgres]\nstart_timeout = "99999999999999999999s"\n', [], {}, 78, "config.toml:2"),
            ("file stop_timeout int64 max", "[postgres]\nstop_timeout = 9223372036854775807\n", [], {}, 78, "config.toml:2"),
            ("file memory overflow", '[postgres]\nmemory = "9223372036854775807GB"\n', [], {}, 78, "config.toml:2"),
            ("file cpus type", '[postgres]\ncpus = "four"\n', [], {}, 78, "config.toml:2"),
            ("file profile", '[postgres]\nprofile = "fast"\n', [], {}, 78, "config.toml:2"),
            ("file template_cache type", "[postgres]\ntemplate_cache = 1\n", [], {}, 78, "config.toml:2"),
            ("file initdb_args type", "[postgres]\ninitdb_args = [1]\n", [], {}, 78, "config.toml:2"),
            ("file locale type", "[postgres]\nlocale = 5\n", [], {}, 78, "config.toml:2"),
            ("file encoding empty", '[postgres]\nencoding = ""\n', [], {}, 78, "config.toml:2"),
            ("file user type", "[postgres]\nuser = true\n", [], {}, 78, "config.toml:2"),
            ("file bin_dir type", "[postgres]\nbin_dir = [1]\n", [], {}, 78, "config.toml:2"),
            ("file socket_dir type", "[postgres]\nsocket_dir = 1.5\n", [], {}, 78, "config.toml:2"),
            ("file parameter name", '[postgres.parameters]\n"1x" = 1\n', [], {}, 78, "config.toml:2"),
            ("file memory too small", '[postgres]\nmemory = "1MB"\n', [], {}, 78, "config.toml:2"),
            ("file cpus overflow", "[postgres]\ncpus = 99999999999999999999\n", [], {}, 78, "config.toml:2"),
            ("file control character", '[postgres]\nlocale = "C\x01"\n', [], {}, 78, "config.toml:2"),
            ("file parameter type", "[postgres.parameters]\nwork_mem = [1]\n", [], {}, 78, "config.toml:2"),
            ("file postgres not a table", "postgres = 1\n", [], {}, 78, "config.toml:1"),
            ("file deep nesting", "[postgres]\ninitdb_args = " + deep + "\n", [], {}, 78, "config.toml:2"),
            ("file deep inline tables", "[postgres]\nx = " + "{a=" * 5000 + "\n", [], {}, 78, "config.toml:2"),
            ("file long dotted key", "[postgres]\n" + "a." * 5000 + "b = 1\n", [], {}, 78, "config.toml:2"),
            ("file too many quotes", '[postgres]\nlocale = """C""""""\n', [], {}, 78, "config.toml:2"),
            ("file table after dotted key", "[postgres]\nparameters.a = 1\n[postgres.parameters]\n", [], {}, 78, "config.toml:3"),
            ("file not UTF-8", b'[postgres]\nlocale = "C\xff"\n', [], {}, 78, "config.toml:2: not UTF-8"),
            ("file bin_dir too long", '[postgres]\nbin_dir = "/' + "x" * 5000 + '"\n', [], {}, 69, "x" * 20),
            ("file socket_dir not a directory", '[postgres]\nsocket_dir = ".amp/config.toml"\n', [], {}, 73, "config.toml"),
        ]
        failed = []
        for i, (name, text, args, env, code, needle) in enumerate(cases):
            base = self.project(f"bad-{i}")
            if text is not None:
                os.makedirs(base + "/.amp", exist_ok=True)
                with open(base + "/.amp/config.toml", "wb") as f:
                    f.write(text if isinstance(text, bytes) else text.encode())
            before = sorted(os.listdir(base + "/.amp")) if os.path.isdir(base + "/.amp") else []
            e = self.env(base)
            e.update(env)
            p = subprocess.run([self.ampd, "run", "--amp-dir", base] + args, env=e, capture_output=True, text=True,
                               errors="replace", timeout=60)
            out = (p.stdout + p.stderr).strip()
            errors = [l for l in out.splitlines() if "error" in l.lower() or needle in l]
            after = sorted(os.listdir(base + "/.amp")) if os.path.isdir(base + "/.amp") else []
            untouched = after == before or (code in (69, 73) and "PG_VERSION" not in "".join(after))
            if p.returncode != code or needle not in out or not untouched or p.returncode < 0:
                failed.append(f"{name}: exit {p.returncode} (want {code}), {'named' if needle in out else 'not named'}, "
                              f"{'untouched' if untouched else 'TOUCHED'}: {out[-300:]}")
            shutil.rmtree(base, ignore_errors=True)
        self.record("bad-input", not failed, f"{len(cases)} bad flags, variables and file contents: "
                    f"{len(cases) - len(failed)} one-line errors with the expected exit code, data untouched"
                    + ("".join("\n    " + f for f in failed)))

    # 7. varlink abuse: RSS levels off; EMFILE does not spin; over the limit a clear error.
    def varlink_abuse(self):
        base = self.project("abuse")
        d = Ampd(self, base)
        ok = d.wait_ready()
        pid = d.proc.pid
        rounds = 5 if self.quick else 20
        idle_threads = thread_count(pid)
        rss = []
        for r in range(rounds):
            conns = []
            for _ in range(500):
                s = socket.socket(socket.AF_UNIX)
                s.connect(d.socket)
                conns.append(s)
            big = socket.socket(socket.AF_UNIX)
            big.connect(d.socket)
            try:
                chunk = b"x" * (1 << 20)
                for _ in range(100):
                    big.sendall(chunk)
            except OSError:
                pass  # cut off at the message limit: expected
            big.close()
            for s in conns:
                s.sendall(b'{"method":"io.amp.Metadb.GetStatus"}\0')
            answered = 0
            for s in conns:
                s.settimeout(30)
                answered += b'"status"' in read_message(s)
                s.close()
            ok = ok and answered == 500
            settle(pid, idle_threads)
            rss.append(rss_kib(pid))
        growth = (rss[-1] - rss[0]) / 1024
        ok = ok and growth <= 10
        d.stop()
        self.record("varlink-rss", ok, f"{rounds} rounds of 500 connections + a 100 MB message: RSS {rss[0] / 1024:.1f} MB after the first, "
                    f"{rss[-1] / 1024:.1f} MB after the last (growth {growth:+.1f} MB, bound 10 MB); all calls answered")

        # A low descriptor limit: accept fails with EMFILE; ampd must wait, not spin.
        base = self.project("emfile")
        d = Ampd(self, base, preexec=lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (96, 96)))
        ok = d.wait_ready()
        conns = []
        for _ in range(120):
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(d.socket)
            except (BlockingIOError, OSError):
                pass
            conns.append(s)
        time.sleep(0.5)
        c0 = cpu_seconds(d.proc.pid)
        time.sleep(2)
        spent = cpu_seconds(d.proc.pid) - c0
        for s in conns:
            s.close()
        time.sleep(1.5)
        reply = varlink_call(d.socket, "io.amp.Metadb.GetStatus")
        ok = ok and spent < 0.5 and "status" in reply.get("parameters", {}) and "cannot accept connections" in d.text
        d.stop()
        self.record("varlink-emfile", ok, f"RLIMIT_NOFILE 96 and 120 pending connections: ampd used {spent:.2f} s CPU in 2 s (no spin), "
                    "logged it, and answered again once they closed")

        # Over the connection limit: an error reply, not a reset.
        base = self.project("cap")
        d = Ampd(self, base)
        ok = d.wait_ready()
        conns = []
        for _ in range(512):
            s = socket.socket(socket.AF_UNIX)
            s.connect(d.socket)
            conns.append(s)
        time.sleep(0.5)
        extra = socket.socket(socket.AF_UNIX)
        extra.settimeout(10)
        extra.connect(d.socket)
        got = read_message(extra)
        for s in conns + [extra]:
            s.close()
        ok = ok and b"TooManyConnections" in got
        d.stop()
        self.record("varlink-limit", ok, f"connection 513: {got.rstrip(bytes(1)).decode(errors='replace')[:120] or 'reset'}")

    # 8. Full disk on a small tmpfs (root): first start names needs/has; a running server shows it.
    def full_disk(self):
        if not self.root_user:
            self.results.append(None)
            print("fault full-disk: skipped — needs root to mount a small tmpfs (make faults as root runs it)", flush=True)
            return
        mnt = tempfile.mkdtemp(prefix="amp-fulldisk.", dir=self.tmp)
        ok = True
        figures = []
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", mnt], check=True)
            shutil.chown(mnt, self.root_user)
            base = mnt + "/p"
            os.mkdir(base)
            shutil.chown(base, self.root_user)
            e = self.env(base)
            p = subprocess.run(["runuser", "-u", self.root_user, "--", "env"] + [f"{k}={v}" for k, v in e.items()]
                               + [self.ampd, "run", "--amp-dir", base, "--no-template-cache"],
                               capture_output=True, text=True, timeout=120)
            out = p.stdout + p.stderr
            named = "needs 64 MB free on" in out and "has " in out
            leftovers = [n for n in os.listdir(base + "/.amp") if "initdb" in n] if os.path.isdir(base + "/.amp") else []
            ok = ok and p.returncode == 73 and named and not leftovers and not os.path.exists(base + "/.amp/metadb/PG_VERSION")
            figures.append(f"20 MB tmpfs: exit {p.returncode}, '{next((l for l in out.splitlines() if 'needs' in l), '?').split('error: ')[-1][:120]}'")
            subprocess.run(["umount", mnt], check=True)

            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m,mode=0755", "tmpfs", mnt], check=True)
            shutil.chown(mnt, self.root_user)
            base = mnt + "/p"
            os.mkdir(base)
            shutil.chown(base, self.root_user)
            d = Ampd(self, base, ["--no-template-cache"], user=self.root_user)
            ok = ok and d.wait_ready()
            query(d.url, "CREATE TABLE filler (b text)")
            # Fill what is left with a file, then make PostgreSQL need more.
            free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
            with open(mnt + "/ballast", "wb") as f:
                try:
                    f.write(b"\0" * max(0, free - (2 << 20)))
                except OSError:
                    pass
            failed_insert = False
            try:
                for _ in range(50):
                    query(d.url, "INSERT INTO filler SELECT repeat(md5(g::text), 64) FROM generate_series(1, 20000) g")
            except RuntimeError as err:
                failed_insert = "No space left" in str(err) or "could not" in str(err)
            t0 = time.time()
            status = {}
            while time.time() - t0 < 30:
                status = varlink_call_as(self.root_user, d.socket, "io.amp.Metadb.GetStatus").get("parameters", {}).get("status", {})
                if "disk full" in (status.get("phase") or ""):
                    break
                time.sleep(0.2)
            shown = "disk full on" in (status.get("phase") or "")
            figures.append(f"160 MB tmpfs filled: insert {'failed' if failed_insert else 'did not fail'}, status '{status.get('phase', '?')[:100]}'")
            os.unlink(mnt + "/ballast")
            # Room again: a check clears it (ticks run while degraded, watchdog or not). The
            # archive on the same disk first catches up on the WAL the slot kept, so allow time.
            t0 = time.time()
            while time.time() - t0 < 45:
                status = varlink_call_as(self.root_user, d.socket, "io.amp.Metadb.GetStatus").get("parameters", {}).get("status", {})
                if (status.get("phase") or "").startswith("ready"):
                    break
                time.sleep(0.2)
            cleared = (status.get("phase") or "").startswith("ready")
            room = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize >> 20
            figures.append(f"space freed ({room} MB free): status '{(status.get('phase') or '?')[:60]}' after {time.time() - t0:.1f} s")
            d.stop()
            ok = ok and failed_insert and shown and cleared
        except Exception as err:  # noqa: BLE001 - report, never crash the suite
            ok = False
            figures.append(f"error: {err}")
        finally:
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        self.record("full-disk", ok, "; ".join(figures))


    # 9. Two accounts (root): another user's planted runtime directory and fake ampd, and a
    # symbolic link planted next to an export, must not reach the project's owner.
    def two_accounts(self):
        if not self.root_user:
            self.results.append(None)
            print("fault two-accounts: skipped — needs root to act as a second account (make faults as root runs it)", flush=True)
            return
        import pwd
        user = pwd.getpwnam(self.root_user)
        attacker = "nobody"
        import grp
        attacker_group = grp.getgrgid(pwd.getpwnam(attacker).pw_gid).gr_name
        ampctl = os.path.join(os.path.dirname(self.ampd_source), "ampctl")
        if not os.path.exists(ampctl):
            self.record("two-accounts", False, f"{ampctl} is missing: build ampctl first")
            return
        shutil.copy2(ampctl, self.tmp + "/ampctl")
        ampctl = self.tmp + "/ampctl"
        figures = []
        ok = True
        fake_code = (
            "import os, socket, sys\n"
            "path, log = sys.argv[1], sys.argv[2]\n"
            "os.makedirs(os.path.dirname(path), exist_ok=True)\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(path); os.chmod(path, 0o777); s.listen(8)\n"
            "open(log, 'w').close()\n"
            "while True:\n"
            "    c, _ = s.accept(); c.settimeout(5)\n"
            "    try: data = c.recv(65536)\n"
            "    except OSError: data = b''\n"
            "    open(log, 'ab').write(data)\n"
            "    c.sendall(b'{\"parameters\":{\"url\":\"postgresql://evil@127.0.0.1:1/x\",\"socket_dir\":\"/tmp\",\"port\":1,\"database\":\"x\",\"user\":\"evil\",\"environment\":{}}}\\0')\n"
            "    c.close()\n")
        fakes = []

        def fake_server(path, log):
            # Started as the attacker directly (not through runuser, whose child a kill would miss).
            p = subprocess.Popen(["/usr/bin/python3", "-c", fake_code, path, log], user=attacker, group=attacker_group, extra_groups=[],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            fakes.append(p)
            self.started.append(p)
            for _ in range(100):
                if os.path.exists(log):
                    return True  # bound, listening, log ready
                time.sleep(0.05)
            return False

        def as_user(cmd, cwd, env_extra=None, hide_run_user=False, timeout=60):
            env = ["PATH=/usr/bin:/bin", f"HOME={user.pw_dir}", "NO_COLOR=1", "LANG=C.UTF-8"] + [f"{k}={v}" for k, v in (env_extra or {}).items()]
            inner = ["runuser", "-u", self.root_user, "--", "env", "-i"] + env + cmd
            if hide_run_user:
                # /run/user/UID hidden in a private mount namespace: the /tmp/amp-UID fallback.
                inner = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                         'mount -t tmpfs -o mode=0755,size=1m tmpfs /run/user && cd "$0" && exec "$@"', cwd] + inner
            return subprocess.run(inner, cwd=cwd, capture_output=True, text=True, timeout=timeout)

        planted = f"/tmp/amp-{user.pw_uid}"
        saved = None
        try:
            # 1. A runtime directory another user made (0777): ampd and ampctl refuse it.
            if os.path.lexists(planted):
                saved = planted + ".faults-saved"
                os.rename(planted, saved)
            os.mkdir(planted)
            shutil.chown(planted, attacker)
            os.chmod(planted, 0o777)
            base = self.project("victim")
            name = os.path.basename(base)
            log = planted + "/calls"  # the attacker writes only where they may
            ok = fake_server(f"{planted}/amp/{name}/io.amp.Metadb", log) and ok
            p = as_user([self.ampd, "run", "--amp-dir", base], base, hide_run_user=True)
            out = p.stdout + p.stderr
            refused = p.returncode == 77 and f"refusing to put the varlink socket below {planted}" in out
            ok = ok and refused
            figures.append(f"ampd with {planted} made by {attacker} (0777): exit {p.returncode}{'' if refused else ' ' + out[-200:]}")
            os.makedirs(base + "/.amp", exist_ok=True)
            shutil.chown(base + "/.amp", self.root_user)
            p = as_user([ampctl, "url"], base, hide_run_user=True)
            out = p.stdout + p.stderr
            calls = open(log, "rb").read() if os.path.exists(log) else b""
            trusted = "evil" in out
            ok = ok and p.returncode == 77 and not trusted and not calls
            figures.append(f"ampctl url against the fake ampd in it: exit {p.returncode}, {len(calls)} bytes sent to it, "
                           f"{'printed the fake URL' if trusted else 'no fake URL'}")

            # 2. A fake server elsewhere, named with --address: SO_PEERCRED says whose it is.
            shared = self.tmp + "/shared-sock"
            os.mkdir(shared)
            os.chmod(shared, 0o777)
            log2 = shared + "/calls"
            ok = fake_server(shared + "/evil.sock", log2) and ok
            p = as_user([ampctl, "url", "--address", "unix:" + shared + "/evil.sock"], base)
            out = p.stdout + p.stderr
            calls = open(log2, "rb").read() if os.path.exists(log2) else b""
            peer = p.returncode == 77 and "is served by UID" in out and not calls and "evil@" not in out
            ok = ok and peer
            figures.append(f"ampctl --address to {attacker}'s socket: exit {p.returncode}, {len(calls)} bytes sent{'' if peer else ' ' + out[-200:]}")

            # 3. Symbolic links planted where the old export wrote its temporary file.
            d = Ampd(self, self.project("exporter"), user=self.root_user)
            ok = ok and d.wait_ready()
            drop = self.tmp + "/drop"
            os.mkdir(drop)
            os.chmod(drop, 0o777)  # shared, and no sticky bit: fs.protected_symlinks does not help here
            victim = self.tmp + "/attacker-file"
            open(victim, "w").close()
            shutil.chown(victim, attacker)
            os.chmod(victim, 0o666)
            next_pid = int(open("/proc/sys/kernel/ns_last_pid").read()) if os.path.exists("/proc/sys/kernel/ns_last_pid") else os.getpid()
            for pid in range(next_pid, next_pid + 3000):
                os.symlink(victim, f"{drop}/a.dump.tmp-{pid}")
            p = as_user([ampctl, "export", drop + "/a.dump"], d.base, {"XDG_RUNTIME_DIR": d.base + "/run"})
            st = os.lstat(drop + "/a.dump") if os.path.lexists(drop + "/a.dump") else None
            import stat as statmod
            safe = (p.returncode == 0 and st is not None and statmod.S_ISREG(st.st_mode) and st.st_uid == user.pw_uid
                    and (st.st_mode & 0o777) == 0o600 and os.path.getsize(victim) == 0)
            ok = ok and safe
            figures.append(f"export into a 0777 directory with 3000 planted links: exit {p.returncode}, dump "
                           f"{oct(st.st_mode & 0o777) if st else 'missing'} owned by UID {st.st_uid if st else '?'}, "
                           f"the other user's file {os.path.getsize(victim)} bytes{'' if safe else ' ' + (p.stdout + p.stderr)[-200:]}")
            d.stop()
        except Exception as err:  # noqa: BLE001 - report, never crash the suite
            ok = False
            figures.append(f"error: {err!r}")
        finally:
            for f in fakes:
                f.kill()
                f.wait()
            shutil.rmtree(planted, ignore_errors=True)
            if saved:
                os.rename(saved, planted)
        self.record("two-accounts", ok, "; ".join(figures))

    # 10. ampd SIGKILLed in the middle of a snapshot restore or a reset: the next start finishes
    # or rolls back, no scratch copy of the cluster is left, the data is the old or the new.
    def interrupted_operations(self):
        rounds = 4 if self.quick else 18
        base = self.project("interrupted")
        ampdir = base + "/.amp"

        def scratch():
            return sorted(n for n in os.listdir(ampdir) if n.startswith((".restore-", ".before-", ".upgrade-", ".removing-")))

        d = Ampd(self, base)
        ok = d.wait_ready()
        figures, hit, outcomes, left_over = [], 0, {}, []
        if ok:
            query(d.url, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('snap')")
            reply = varlink_call(d.socket, "io.amp.Metadb.CreateSnapshot", {"name": "s1"}, timeout=120)
            ok = "error" not in reply
            d.wait_ready()
        for i in range(rounds if ok else 0):
            if not d.wait_ready():
                ok = False
                figures.append(f"round {i}: not ready: {d.text[-300:]}")
                break
            query(d.url, "SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS marker (v text); DELETE FROM marker; INSERT INTO marker VALUES ('current')")
            op = "restore" if i % 2 == 0 else "reset"
            method, params = ("io.amp.Metadb.RestoreSnapshot", {"name": "s1"}) if op == "restore" else ("io.amp.Metadb.ResetCluster", {})
            caller = threading.Thread(target=lambda: varlink_call(d.socket, method, params, timeout=120), daemon=True)
            caller.start()
            time.sleep(random.uniform(0.05, 1.2))
            d.proc.kill()
            d.proc.wait()
            caller.join(10)
            before = scratch()
            hit += 1 if before else 0
            d = Ampd(self, base)
            if not d.wait_ready():
                ok = False
                figures.append(f"round {i} ({op}): no start after the kill: {d.text[-400:]}")
                break
            after = scratch()
            if after:
                left_over.append(f"round {i}: {after}")
            try:
                value = query(d.url, "SELECT v FROM marker")[0][0]
            except (RuntimeError, IndexError):
                value = "gone"
            allowed = {"restore": {"current", "snap"}, "reset": {"current", "gone"}}[op]
            outcomes[f"{op}:{value}"] = outcomes.get(f"{op}:{value}", 0) + 1
            if value not in allowed:
                ok = False
                figures.append(f"round {i} ({op}): marker is {value!r}")
        d.stop()
        ok = ok and not left_over
        figures.insert(0, f"{rounds} SIGKILLs of ampd during restore/reset, {hit} with scratch copies present at the kill, "
                          f"{len(left_over)} rounds with copies left after the next start; outcomes {dict(sorted(outcomes.items()))}")
        self.record("interrupted-operations", ok, "; ".join(figures + left_over))

    # 11. ampd's own idle sessions (the test-database pool's checks) never block a copy of the
    # default database: createdb --from postgres right after ampctl testdb, many times over.
    def pool_sessions(self):
        rounds = 3 if self.quick else 20
        base = self.project("pool-sessions")
        ampctl = os.path.join(os.path.dirname(self.ampd_source), "ampctl")
        d = Ampd(self, base)
        ok = d.wait_ready()
        env = self.env(base)
        failures = []

        def run(*args):
            p = subprocess.run([ampctl] + list(args), cwd=base, env=env, capture_output=True, text=True, errors="replace", timeout=120)
            if p.returncode != 0:
                failures.append(f"ampctl {' '.join(args)}: exit {p.returncode}: {(p.stdout + p.stderr).strip()[-200:]}")
        run("createdb", "tpl")
        for i in range(rounds if ok else 0):
            run("testdb", "--template", "tpl", "--", "true")
            run("createdb", f"copy{i}", "--from", "postgres")
            run("testdb", "--", "true")
        d.stop()
        self.record("pool-sessions", ok and not failures,
                    f"{rounds} rounds of testdb --template, createdb --from postgres and testdb on the default database: "
                    f"{len(failures)} failed" + "".join("\n    " + f for f in failures[:5]))

    # --- the continuous archive (issue 20) ---------------------------------------------------

    def ampctl(self, base, args, timeout=300):
        """ampctl in `base`, with a HOME of the suite's own (restore --into registers a project there)."""
        exe = os.path.join(os.path.dirname(self.ampd_source), "ampctl")
        home = self.tmp + "/home"
        os.makedirs(home, mode=0o700, exist_ok=True)
        return subprocess.run([exe] + args, cwd=base, env=dict(self.env(base), HOME=home, XDG_CONFIG_HOME=home + "/.config"),
                              capture_output=True, text=True, timeout=timeout)

    def archive_ready(self, d, timeout=60):
        """Waits until the archive streams and has a base backup; its ListBackups reply."""
        t0, reply = time.time(), {}
        while time.time() - t0 < timeout:
            reply = varlink_call(d.socket, "io.amp.Metadb.ListBackups").get("parameters", {})
            if reply.get("backups") and reply.get("archive", {}).get("state") == "streaming":
                return reply
            time.sleep(0.3)
        return None

    def receivers(self, base):
        """PIDs of the pg_receivewal this suite's ampd started for `base` (by its command line)."""
        found = []
        for pid in (int(n) for n in os.listdir("/proc") if n.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"pg_receivewal") and (base + "/.amp/backup/receiving").encode() in cmd:
                found.append(pid)
        return found

    def writer(self, url, acked, stop):
        """Commits one row per transaction until `stop`; `acked` gets (id, time acknowledged)."""
        def run():
            try:
                c = PG(url)
            except RuntimeError:
                return
            n = len(acked)
            try:
                while not stop.is_set():
                    n += 1
                    c.exec(f"INSERT INTO t VALUES ({n})")
                    acked.append((n, time.time()))
            except RuntimeError:
                pass
            finally:
                c.close()
        w = threading.Thread(target=run, daemon=True)
        w.start()
        return w

    def restored_ids(self, url):
        return {int(r[0]) for r in query(url, "SELECT id FROM t")}

    # The archiver (pg_receivewal) SIGKILLed under load: no gap, or the gap named and a new base backup.
    def archiver_killed(self):
        rounds = 3 if self.quick else 10
        base = self.project("archiver-killed")
        d = Ampd(self, base)
        if not d.wait_ready() or not self.archive_ready(d):
            self.record("archiver-killed", False, "no archive: " + d.text[-500:])
            return
        query(d.url, "CREATE TABLE t (id bigint PRIMARY KEY)")
        acked, stop = [], threading.Event()
        w = self.writer(d.url, acked, stop)
        kills, restarts = 0, 0
        for _ in range(rounds):
            time.sleep(random.uniform(0.8, 2.0))
            pids = self.receivers(base)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            t0 = time.time()
            while time.time() - t0 < 15:
                now = self.receivers(base)
                if now and not set(now) & set(pids):
                    restarts += 1
                    break
                time.sleep(0.1)
        time.sleep(1.5)
        stop.set()
        w.join(10)
        time.sleep(1.5)
        reply = varlink_call(d.socket, "io.amp.Metadb.ListBackups").get("parameters", {})
        problem = reply.get("archive", {}).get("problem")
        into = base + "-copy"
        p = self.ampctl(base, ["restore", "--to", "latest", "--into", into, "--json"], timeout=300)
        got, missing = set(), []
        if p.returncode == 0:
            c = Ampd(self, into)
            if c.wait_ready():
                got = self.restored_ids(c.url)
            c.stop()
        missing = [i for i, _ in acked if i not in got]
        d.stop()
        ok = p.returncode == 0 and kills == rounds and restarts == rounds and not missing and problem is None
        self.record("archiver-killed", ok,
                    f"{kills} SIGKILLs of pg_receivewal under load, {restarts} restarts by ampd, {len(acked)} commits acknowledged, "
                    f"{len(missing)} missing from a restore of the archive's end; archive problem: {problem or 'none'}"
                    + ("" if p.returncode == 0 else f"; restore: {p.stderr.strip()[-300:]}"))

    # `rm -rf .amp/metadb` under load, then a restore to the archive's end.
    def deleted_cluster(self):
        cases = [("dev", False), ("dev", True)] if self.quick else [("dev", False), ("durable", False), ("dev", True), ("durable", True)]
        for profile, sync in cases:
            name = f"deleted-cluster[{profile}{', synchronous' if sync else ''}]"
            base = self.project(f"deleted-{profile}-{int(sync)}")
            if sync:
                os.makedirs(base + "/.amp", exist_ok=True)
                with open(base + "/.amp/config.toml", "w") as f:
                    f.write("[backup]\nsynchronous = true\n")
            d = Ampd(self, base, ["--profile", profile])
            if not d.wait_ready() or not self.archive_ready(d):
                self.record(name, False, "no archive: " + d.text[-500:])
                continue
            query(d.url, "CREATE TABLE t (id bigint PRIMARY KEY)")
            acked, stop = [], threading.Event()
            w = self.writer(d.url, acked, stop)
            time.sleep(random.uniform(1.5, 3.0))
            deleted = time.time()
            shutil.rmtree(base + "/.amp/metadb", ignore_errors=True)
            time.sleep(0.5)
            stop.set()
            w.join(10)
            t0 = time.time()
            reply = varlink_call(d.socket, "io.amp.Metadb.RestoreToTime", {"target": "latest"}, timeout=300)
            took = time.time() - t0
            restored = reply.get("parameters", {}).get("restored", {})
            got = set()
            if d.wait_ready(30):
                try:
                    got = self.restored_ids(d.url)
                except RuntimeError as err:
                    reply.setdefault("error", str(err))
            margin = 0 if sync else 1.0
            must = [i for i, at in acked if at < deleted - margin]
            missing = [i for i in must if i not in got]
            before_deletion = [i for i, at in acked if at < deleted]
            d.stop()
            ok = "error" not in reply and bool(must) and not missing
            self.record(name, ok,
                        f"{len(before_deletion)} commits acknowledged before the deletion, {len(must)} of them more than {margin:.0f} s before; "
                        f"{len(missing)} missing after restore --to latest ({len(got)} rows back, restored in {took:.1f} s, "
                        f"{restored.get('replayed_bytes', 0) >> 20} MB of WAL replayed)" + (f"; error: {reply.get('error')} {reply.get('parameters')}" if "error" in reply else ""))

    # A damaged WAL segment in the archive: the restore stops at the last good moment and says which.
    def damaged_wal(self):
        base = self.project("damaged-wal")
        d = Ampd(self, base)
        if not d.wait_ready() or not self.archive_ready(d):
            self.record("damaged-wal", False, "no archive: " + d.text[-500:])
            return
        query(d.url, "CREATE TABLE t (id bigint PRIMARY KEY)")
        batches = []
        for b in range(3):
            query(d.url, f"INSERT INTO t SELECT g FROM generate_series({b * 1000 + 1}, {b * 1000 + 1000}) g")
            batches.append(query(d.url, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
            query(d.url, "SELECT pg_switch_wal()")
        time.sleep(1.5)
        d.stop()
        wal = base + "/.amp/backup/wal"
        # Damage the segment of the second batch in its middle (a record's body, not only padding).
        target = os.path.join(wal, batches[1]) if os.path.exists(os.path.join(wal, batches[1])) else os.path.join(base + "/.amp/backup/receiving", batches[1])
        with open(target, "r+b") as f:
            f.seek(8192 * 4 + 100)
            f.write(os.urandom(4096))
        into = base + "-copy"
        p = self.ampctl(base, ["restore", "--to", "latest", "--into", into, "--json"])
        got = set()
        if p.returncode == 0:
            c = Ampd(self, into)
            if c.wait_ready():
                got = self.restored_ids(c.url)
            c.stop()
        said = batches[1] in (p.stdout + p.stderr)
        ok = p.returncode == 0 and set(range(1, 1001)) <= got and not (set(range(2001, 3001)) & got) and said
        self.record("damaged-wal", ok,
                    f"segment {batches[1]} damaged: restore --to latest ended with {len(got)} rows (batch 1: {len(set(range(1, 1001)) & got)}, "
                    f"batch 3: {len(set(range(2001, 3001)) & got)}); named the segment: {said}: "
                    + next((l for l in (p.stderr + p.stdout).splitlines() if "stopped" in l), p.stderr.strip()[-200:])[:200])

    # A restore to a moment killed midway (ampd SIGKILLed during the replay): the cluster as it was.
    def restore_killed(self):
        rounds = 2 if self.quick else 8
        base = self.project("restore-killed")
        d = Ampd(self, base)
        if not d.wait_ready() or not self.archive_ready(d):
            self.record("restore-killed", False, "no archive: " + d.text[-500:])
            return
        query(d.url, "CREATE TABLE t (id bigint PRIMARY KEY, pad text)")
        query(d.url, "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g")  # WAL to replay
        figures, ok, hit = [], True, 0
        for i in range(rounds):
            query(d.url, f"INSERT INTO t VALUES ({1_000_000 + i}, 'marker')")
            expected = query(d.url, "SELECT count(*) FROM t")[0][0]
            caller = threading.Thread(target=lambda: varlink_call(d.socket, "io.amp.Metadb.RestoreToTime", {"target": "latest"}, timeout=300), daemon=True)
            caller.start()
            # Kill at a random moment of the replay (the scratch cluster exists while it runs).
            t0 = time.time()
            while time.time() - t0 < 10 and not any(n.startswith(".pitr-") for n in os.listdir(base + "/.amp")):
                time.sleep(0.005)
            time.sleep(random.uniform(0, 0.2))
            if any(n.startswith(".pitr-") for n in os.listdir(base + "/.amp")):
                hit += 1
            d.proc.kill()
            d.proc.wait()
            caller.join(10)
            d = Ampd(self, base)
            if not d.wait_ready():
                ok = False
                figures.append(f"round {i}: no start after the kill: {d.text[-300:]}")
                break
            count = query(d.url, "SELECT count(*) FROM t")[0][0]
            left = [n for n in os.listdir(base + "/.amp") if n.startswith((".pitr-", ".before-restore"))]
            if count != expected or left:
                ok = False
                figures.append(f"round {i}: {count} rows, expected {expected}; left: {left}")
        d.stop()
        self.record("restore-killed", ok and hit > 0, f"{rounds} restores to latest SIGKILLed ({hit} during the replay): the cluster as it was each time, nothing left aside"
                    + "".join("\n    " + f for f in figures))

    # As root: the archive's disk full: the cluster keeps serving, the status names it, its own disk does not fill.
    def archive_disk_full(self):
        if not self.root_user:
            self.results.append(None)
            print("fault archive-disk-full: skipped — needs root to mount a small tmpfs for the archive", flush=True)
            return
        mnt = tempfile.mkdtemp(prefix="amp-archivefull.", dir=self.tmp)
        figures, ok = [], True
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m,mode=0755", "tmpfs", mnt], check=True)
            shutil.chown(mnt, self.root_user)
            base = self.project("archive-full")
            os.makedirs(base + "/.amp", exist_ok=True)
            with open(base + "/.amp/config.toml", "w") as f:
                f.write(f'[backup]\ntarget = "{mnt}/archive"\nmax_slot_wal = "64MB"\n\n[postgres.parameters]\nmax_wal_size = "64MB"\n')
            for p in (base + "/.amp", base + "/.amp/config.toml"):
                shutil.chown(p, self.root_user)
            d = Ampd(self, base, user=self.root_user)
            ok = d.wait_ready()
            t0 = time.time()
            while ok and time.time() - t0 < 60:
                st = varlink_call_as(self.root_user, d.socket, "io.amp.Metadb.GetStatus").get("parameters", {}).get("status", {})
                if st.get("archive") == "streaming" and st.get("restorable_from"):
                    break
                time.sleep(0.3)
            query(d.url, "CREATE TABLE t (b text)")
            failed = 0
            for _ in range(40):  # about 400 MB of WAL against an 80 MB archive disk
                try:
                    query(d.url, "INSERT INTO t SELECT repeat(md5(g::text), 8) FROM generate_series(1, 30000) g; CHECKPOINT")
                except RuntimeError:
                    failed += 1
            st = {}
            t0 = time.time()
            while time.time() - t0 < 30:
                st = varlink_call_as(self.root_user, d.socket, "io.amp.Metadb.GetStatus").get("parameters", {}).get("status", {})
                if "disk is full" in (st.get("archive") or "") + (st.get("archive_problem") or ""):
                    break
                time.sleep(0.5)
            named = "disk is full" in (st.get("archive") or "") + (st.get("archive_problem") or "")
            pg_wal = sum(os.path.getsize(os.path.join(base + "/.amp/metadb/pg_wal", n)) for n in os.listdir(base + "/.amp/metadb/pg_wal")
                         if os.path.isfile(os.path.join(base + "/.amp/metadb/pg_wal", n)))
            serving = query(d.url, "SELECT count(*) FROM t")[0][0]
            bound = (64 + 64 + 64) << 20  # max_wal_size + max_slot_wal + a few segments
            ok = ok and failed == 0 and named and pg_wal <= bound
            figures.append(f"400 MB of WAL against an 80 MB archive disk: {failed} of 40 inserts failed, the cluster serves ({serving} rows), "
                           f"pg_wal {pg_wal >> 20} MB (bound {bound >> 20} MB), status: '{(st.get('archive_problem') or st.get('archive') or '?')[:110]}'")
            d.stop()
        except Exception as err:  # noqa: BLE001 - report, never crash the suite
            ok = False
            figures.append(f"error: {err}")
        finally:
            subprocess.run(["umount", "-l", mnt], check=False)
        self.record("archive-disk-full", ok, "; ".join(figures))

FAULTS = ["commit_loss", "ampd_sigkill", "hung_postmaster", "concurrent_starts", "stale_pid", "bad_input", "varlink_abuse", "full_disk",
          "two_accounts", "interrupted_operations", "pool_sessions", "archiver_killed", "deleted_cluster", "damaged_wal", "restore_killed",
          "archive_disk_full"]
ROOT_FAULTS = ["full_disk", "two_accounts", "archive_disk_full"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--root-user")
    args = ap.parse_args()
    if os.geteuid() == 0 and not args.root_user:
        print("faults: PostgreSQL refuses root: run as an unprivileged account, or pass --root-user USER for the root-only faults", file=sys.stderr)
        return 2
    suite = Suite(args)
    only = [n.replace("-", "_") for n in args.only.split(",") if n]
    names = only or (ROOT_FAULTS if args.root_user else [n for n in FAULTS if n not in ROOT_FAULTS])
    try:
        for name in names:
            try:
                getattr(suite, name)()
            except Exception as err:  # noqa: BLE001 - one fault's crash is that fault's failure
                suite.record(name.replace("_", "-"), False, f"the check itself failed: {err!r}")
    finally:
        suite.cleanup()
    passed = sum(1 for r in suite.results if r is True)
    failed = sum(1 for r in suite.results if r is False)
    skipped = sum(1 for r in suite.results if r is None)
    print(f"faults: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
