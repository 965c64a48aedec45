# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared pieces of the nbdd benchmark: printing and recording every command,
starting and stopping servers (cleaned up however the run ends), per-process
CPU time from /proc, fio runs and their JSON.

Only the standard library: the benchmark runs wherever `make check` does.
"""
import atexit
import json
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
GiB = 1 << 30
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def die(msg):
    print(f"bench: {msg}", file=sys.stderr)
    sys.exit(1)


class Context:
    """What one `bench/run` needs everywhere: options, the output directory,
    the log of commands (printed as they run, kept in commands.sh)."""

    def __init__(self, opts, outdir, workdir):
        self.opts = opts
        self.outdir = outdir
        self.workdir = workdir  # sockets, configs: a private tmp directory
        self.logdir = os.path.join(outdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self._cmdlog = open(os.path.join(outdir, "commands.sh"), "a")
        self.seq = 0

    def note(self, text):
        print(text, flush=True)
        self._cmdlog.write(f"# {text}\n")
        self._cmdlog.flush()

    def cmd(self, argv, comment=None):
        """Print a command exactly as it can be repeated, and record it."""
        line = " ".join(shlex.quote(str(a)) for a in argv)
        print(f"$ {line}" + (f"    # {comment}" if comment else ""), flush=True)
        self._cmdlog.write(line + (f"    # {comment}" if comment else "") + "\n")
        self._cmdlog.flush()
        return line

    def next_name(self, stem):
        self.seq += 1
        return f"{self.seq:04d}-{stem}"


# ---- /proc ----


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    # comm may hold spaces and parentheses: the fields start after the last ')'
    return s[s.rindex(")") + 2:].split()


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def cpu_seconds(pid):
    """utime+stime of the process (all its threads, live and exited) plus
    cutime+cstime (its reaped children), plus the same for its live
    descendants: nbd-server forks one process per connection."""
    total = 0
    for p in tree(pid):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        # after ')': state ppid pgrp session tty tpgid flags minflt cminflt
        # majflt cmajflt utime stime cutime cstime ...
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kb(pid):
    return status_kb(pid, "VmRSS")


def threads(pid):
    return status_kb(pid, "Threads")


# ---- servers ----

_live = []


def _cleanup():
    for s in list(_live):
        try:
            s.stop()
        except Exception as e:  # never leave a server behind over one error
            print(f"bench: stopping {s.name}: {e}", file=sys.stderr)


def _on_signal(sig, frame):
    sys.exit(128 + sig)


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


class Server:
    """One NBD server process on a Unix socket.

    argv runs in the foreground, or daemonizes and writes pidfile (nbd-server
    cannot do both: in its -d mode it serves one client and exits). files
    are created sparse before start (size bytes) and removed at stop."""

    def __init__(self, ctx, name, backend, desc, argv, sock, export="bench",
                 pidfile=None, files=(), size=GiB, env=None):
        self.ctx, self.name, self.backend, self.desc = ctx, name, backend, desc
        self.argv, self.sock, self.export = argv, sock, export
        self.pidfile, self.files, self.size, self.env = pidfile, files, size, env
        self.proc = None
        self.pid = None
        self.log = os.path.join(ctx.logdir, f"server-{name}-{backend}.log")

    @property
    def uri(self):
        return f"nbd+unix:///{self.export}?socket={self.sock}"

    def start(self):
        for path in self.files:
            with open(path, "wb") as f:
                f.truncate(self.size)
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.ctx.cmd(self.argv, f"{self.name}, {self.backend} backend")
        logf = open(self.log, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        _live.append(self)
        deadline = time.monotonic() + 20
        if self.pidfile:
            # Daemonizes: the parent exits once the child is set up.
            self.proc.wait(timeout=20)
            while not os.path.exists(self.pidfile) or not open(self.pidfile).read().strip():
                if time.monotonic() > deadline:
                    self._fail("wrote no pid file")
                time.sleep(0.05)
            self.pid = int(open(self.pidfile).read().split()[0])
        else:
            self.pid = self.proc.pid
        while not self._listening():
            if not self.alive():
                self._fail("exited at start")
            if time.monotonic() > deadline:
                self._fail("is not listening after 20 s")
            time.sleep(0.05)

    def _listening(self):
        if not os.path.exists(self.sock):
            return False
        # A plain connect would be a (failed) NBD client to nbd-server and
        # qemu-nbd; the socket existing and the process alive is enough.
        return True

    def _fail(self, what):
        tail = ""
        try:
            tail = open(self.log, errors="replace").read()[-2000:]
        except OSError:
            pass
        self.stop()
        die(f"{self.name} ({self.backend}) {what}; its log {self.log}:\n{tail}")

    def alive(self):
        if self.proc and self.proc.poll() is None:
            return True
        if self.pidfile and self.pid:
            try:
                os.kill(self.pid, 0)
                return True
            except OSError:
                return False
        return False

    def cpu(self):
        return cpu_seconds(self.pid)

    def settle(self, limit=3.0):
        """After a client left: wait until per-connection children are gone
        (and so counted in cutime) and threads have wound down."""
        deadline = time.monotonic() + limit
        while children(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self):
        if self in _live:
            _live.remove(self)
        pid = self.pid or (self.proc.pid if self.proc else None)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc and self.proc.pid == pid:
                    if self.proc.poll() is not None:
                        break
                else:
                    try:
                        os.kill(pid, 0)
                    except OSError:
                        break
                time.sleep(0.05)
            else:
                print(f"bench: {self.name} ignored SIGTERM; killing it", file=sys.stderr)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            # nbd-server's per-connection children, if any are left
            for c in children(pid):
                try:
                    os.kill(c, signal.SIGKILL)
                except OSError:
                    pass
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for path in list(self.files) + [self.sock] + ([self.pidfile] if self.pidfile else []):
            try:
                os.unlink(path)
            except OSError:
                pass
        self.pid = None


# ---- fio ----


def fio_argv(name, target, rw, bs, qd, jobs, runtime, size, out,
             engine="nbd", extra=()):
    argv = ["fio", f"--name={name}"]
    if engine == "nbd":
        argv += ["--ioengine=nbd", f"--uri={target}"]
    else:
        argv += [f"--ioengine={engine}", "--direct=1", f"--filename={target}"]
    argv += [f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}",
             f"--numjobs={jobs}", "--group_reporting"]
    if runtime:
        argv += ["--time_based", f"--runtime={runtime}"]
    if rw.startswith("rand"):
        argv += ["--norandommap", "--randrepeat=0"]
    argv += [f"--size={size}", *extra, "--output-format=json", f"--output={out}"]
    return argv


def run_fio(ctx, argv, timeout, comment=None):
    """Run fio, return (parsed JSON, client CPU seconds). The client CPU is
    every fio process's user+system time (rusage of waited-for children:
    fio forks one process per job and waits for them)."""
    ctx.cmd(argv, comment)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = [a for a in argv if a.startswith("--output=")][0][len("--output="):]
    if p.returncode != 0:
        msg = p.stdout.decode(errors="replace")[-2000:]
        raise RuntimeError(f"fio exited {p.returncode}: {msg}")
    with open(out) as f:
        text = f.read()
    # fio's nbd engine prints "connected to NBD server" lines before the JSON
    d = json.loads(text[text.index("{"):])
    cli = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return d, cli


def fio_metrics(d, rw):
    j = d["jobs"][0]
    side = j["write"] if "write" in rw else j["read"]
    clat = side["clat_ns"]
    pct = clat.get("percentile", {})
    return {
        "ios": side["total_ios"],
        "iops": side["iops"],
        "MBps": side["bw_bytes"] / 1e6,
        "lat_mean_us": clat["mean"] / 1e3,
        "lat_p99_us": pct.get("99.000000", 0) / 1e3,
        "runtime_s": side["runtime"] / 1e3,
        "errors": j.get("error", 0),
    }


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fmt(v, digits=None):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2
    return f"{v:,.{digits}f}"


def table(headers, rows, align=None):
    """A Markdown table (readable as plain text too)."""
    w = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            w[i] = max(w[i], len(c))
    align = align or ["l"] + ["r"] * (len(headers) - 1)

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.ljust(w[i]) if align[i] == "l" else c.rjust(w[i]))
        return "| " + " | ".join(out) + " |"

    sep = "| " + " | ".join(("-" * (w[i] - 1) + ":") if align[i] == "r" else "-" * w[i]
                            for i in range(len(w))) + " |"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def wait_socket(path, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                return True
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.05)
    return False


# ---- command line, for bench/kernel-vm.sh (inside the VM, no imports) ----
#   benchlib.py env k=v...             one JSON object of the pairs
#   benchlib.py fio FILE RW k=v...     fio's metrics + the pairs; client CPU
#                                      from fio's own usr/sys (one job)


def _pairs(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v if v != "" else None
    return out


def _main(argv):
    if len(argv) >= 1 and argv[0] == "env":
        print(json.dumps(_pairs(argv[1:])))
        return 0
    if len(argv) >= 3 and argv[0] == "fio":
        with open(argv[1]) as f:
            text = f.read()
        d = json.loads(text[text.index("{"):])
        m = fio_metrics(d, argv[2])
        m.update(_pairs(argv[3:]))
        m["rw"] = argv[2]
        j = d["jobs"][0]
        cli = (j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1e3
        ios = max(m["ios"], 1)
        m["cli_cpu_s"] = cli
        m["cli_cpu_us_per_io"] = cli / ios * 1e6
        srv = m.get("srv_cpu_s")
        m["srv_cpu_us_per_io"] = srv / ios * 1e6 if isinstance(srv, (int, float)) else None
        print(json.dumps(m))
        return 0
    print("usage: benchlib.py env k=v... | fio FILE RW k=v...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
