# SPDX-License-Identifier: LGPL-2.1-or-later
"""Network path: fio's nbd ioengine (libnbd) over a Unix socket against nbdd
and its peers, each on its in-memory backend and on a null backend.

Each fio job (numjobs) is its own NBD connection. Servers of one backend run
side by side; every cell (workload x queue depth x connections) runs each
server in turn, the order rotating from cell to cell and repeat to repeat,
so background load falls on all of them alike.
"""
import os

import benchlib as bl

# name -> (fio rw, block size)
WORKLOADS = {
    "4k-randread": ("randread", "4k"),
    "4k-randwrite": ("randwrite", "4k"),
    "1M-read": ("read", "1m"),
    "1M-write": ("write", "1m"),
}

SERVERS = ["nbdd", "nbdkit", "qemu-nbd", "nbd-server"]
PEERS = [s for s in SERVERS if s != "nbdd"]

# What each server's backend class is, for the table's legend.
BACKEND_DESC = {
    ("nbdd", "mem"): "memory:size=SIZE",
    ("nbdkit", "mem"): "memory plugin (sparse array)",
    ("qemu-nbd", "mem"): "raw file on /dev/shm (tmpfs)",
    ("nbd-server", "mem"): "file on /dev/shm (tmpfs)",
    ("nbdd", "null"): "null:size=SIZE",
    ("nbdkit", "null"): "null plugin",
    ("qemu-nbd", "null"): "null-co driver, read-zeroes=on",
    ("nbdd", "file"): "file:path= on /dev/shm",
    ("nbdkit", "file"): "file plugin on /dev/shm",
    ("qemu-nbd", "file"): "raw file on /dev/shm",
    ("nbd-server", "file"): "file on /dev/shm",
}


def make_server(ctx, name, backend):
    """The server NAME on backend class BACKEND, or None if it has none."""
    o = ctx.opts
    w = ctx.workdir
    size = o.size_bytes
    sock = f"{w}/{name}-{backend}.sock"
    shm = f"/dev/shm/nbdd-bench-{os.getpid()}-{name}-{backend}.img"
    desc = BACKEND_DESC.get((name, backend), "").replace("SIZE", o.size)
    if name == "nbdd":
        spec = {"mem": f"memory:size={o.size}", "null": f"null:size={o.size}",
                "file": f"file:path={shm}"}[backend]
        argv = [o.nbdd, "--control", f"{w}/nbdd-control-{backend}.sock",
                "--listen", f"unix:{sock}", "--export", f"bench={spec}"]
        if o.nbdd_poll:
            argv += ["--poll-max-us", str(o.nbdd_poll)]
        return bl.Server(ctx, name, backend, spec, argv, sock,
                         files=[shm] if backend == "file" else [], size=size)
    if name == "nbdkit":
        # Defaults: 16 threads, parallel thread model; memory and null
        # advertise multi-conn. Any export name is accepted.
        plugin = {"mem": ["memory", f"size={o.size}"],
                  "null": ["null", f"size={o.size}"],
                  "file": ["file", f"file={shm}"]}[backend]
        argv = ["nbdkit", "--foreground", "--unix", sock, *plugin]
        return bl.Server(ctx, name, backend, desc, argv, sock,
                         files=[shm] if backend == "file" else [], size=size)
    if name == "qemu-nbd":
        # --shared: as many clients as fio has connections; --persistent:
        # outlive each fio run. The file lives on tmpfs: the page cache is
        # the memory (writeback cache; O_DIRECT is not possible on tmpfs).
        common = ["qemu-nbd", "--socket", sock, "--export-name", "bench",
                  "--shared", "16", "--persistent"]
        if backend == "null":
            argv = common + ["--image-opts",
                             f"driver=null-co,size={size},read-zeroes=on"]
            return bl.Server(ctx, name, backend, desc, argv, sock, size=size)
        argv = common + ["--format", "raw", f"--cache={o.qemu_cache}",
                         f"--aio={o.qemu_aio}", shm]
        return bl.Server(ctx, name, backend, desc + f", --aio={o.qemu_aio}",
                         argv, sock, files=[shm], size=size)
    if name == "nbd-server":
        if backend == "null":
            return None  # nbd-server serves files and devices only
        conf = f"{w}/nbd-server-{backend}.conf"
        pidfile = f"{w}/nbd-server-{backend}.pid"
        with open(conf, "w") as f:
            f.write(f"[generic]\nunixsock = {sock}\n"
                    f"[bench]\nexportname = {shm}\n")
        ctx.note(f"nbd-server config {conf}: [generic] unixsock = {sock}; "
                 f"[bench] exportname = {shm}")
        # -d (no daemon) serves one client and exits: let it daemonize and
        # follow it by its pid file. It forks one process per connection.
        argv = ["nbd-server", "-C", conf, "-p", pidfile]
        return bl.Server(ctx, name, backend, desc, argv, sock,
                         pidfile=pidfile, files=[shm], size=size)
    raise ValueError(name)


def cells(opts, backend):
    """The (workload, qd, conns) cells to run, main matrix first."""
    out = []
    for wl in opts.workloads:
        rw, bs = WORKLOADS[wl]
        qds = opts.qds if bs == "4k" else [opts.seq_qd]
        for qd in qds:
            for c in opts.conns:
                out.append({"workload": wl, "qd": qd, "conns": c, "sweep": False})
    if opts.sweep and backend == "mem" and "4k-randread" in opts.workloads:
        have = {(x["workload"], x["qd"], x["conns"]) for x in out}
        for qd in opts.sweep_qds:
            if ("4k-randread", qd, 1) not in have:
                out.append({"workload": "4k-randread", "qd": qd, "conns": 1, "sweep": True})
    return out


def prefill(ctx, s):
    """Write the working set once, so reads find data rather than holes."""
    out = os.path.join(ctx.logdir, ctx.next_name(f"prefill-{s.name}-{s.backend}") + ".json")
    argv = bl.fio_argv("prefill", s.uri, "write", "1m", 8, 1, 0, ctx.opts.ws, out)
    bl.run_fio(ctx, argv, timeout=300, comment=f"prefill {s.name}")


def run_cell(ctx, s, cell, rep):
    o = ctx.opts
    rw, bs = WORKLOADS[cell["workload"]]
    tag = f"{cell['workload']}-qd{cell['qd']}-c{cell['conns']}-{s.name}-{s.backend}-r{rep}"
    out = os.path.join(ctx.logdir, ctx.next_name(tag) + ".json")
    argv = bl.fio_argv(cell["workload"], s.uri, rw, bs, cell["qd"], cell["conns"],
                       o.runtime, o.ws, out)
    s.settle()
    c0 = s.cpu()
    d, cli = bl.run_fio(ctx, argv, timeout=o.runtime + 120,
                        comment=f"{s.name} {s.backend}")
    s.settle()
    c1 = s.cpu()
    if not s.alive():
        bl.die(f"{s.name} died during {tag}; log {s.log}")
    m = bl.fio_metrics(d, rw)
    ios = max(m["ios"], 1)
    m.update({
        "server": s.name, "backend": s.backend, "backend_desc": s.desc,
        "workload": cell["workload"], "rw": rw, "bs": bs, "qd": cell["qd"],
        "conns": cell["conns"], "sweep": cell["sweep"], "repeat": rep,
        "srv_cpu_s": c1 - c0, "cli_cpu_s": cli,
        "srv_cpu_us_per_io": (c1 - c0) / ios * 1e6,
        "cli_cpu_us_per_io": cli / ios * 1e6,
        "fio_json": os.path.relpath(out, ctx.outdir),
        "command": " ".join(argv),
    })
    print(f"  -> {s.name:10s} {m['iops']:>10,.0f} IOPS {m['MBps']:>8,.0f} MB/s "
          f"lat {m['lat_mean_us']:.1f}/{m['lat_p99_us']:.1f} us  "
          f"srv {m['srv_cpu_us_per_io']:.2f} us/IO  cli {m['cli_cpu_us_per_io']:.2f} us/IO",
          flush=True)
    return m


def run(ctx):
    o = ctx.opts
    runs = []
    servers_used = {}
    for backend in o.backends:
        servers = []
        for name in [n for n in SERVERS if n in o.only]:
            if name == "nbdd" and not o.nbdd:
                continue
            s = make_server(ctx, name, backend)
            if s is None:
                ctx.note(f"{name}: no {backend} backend, skipped")
                continue
            servers.append(s)
        if not servers:
            continue
        ctx.note(f"== network path, {backend} backend: "
                 + ", ".join(s.name for s in servers))
        try:
            for s in servers:
                s.start()
                servers_used[f"{s.name}/{backend}"] = {
                    "argv": s.argv, "desc": s.desc}
            if backend != "null":
                for s in servers:
                    prefill(ctx, s)
            cs = cells(o, backend)
            for rep in range(o.repeat):
                for i, cell in enumerate(cs):
                    k = (i + rep) % len(servers)
                    order = servers[k:] + servers[:k]
                    ctx.note(f"-- {backend} {cell['workload']} QD{cell['qd']} "
                             f"x{cell['conns']} conn (repeat {rep + 1}/{o.repeat})")
                    for s in order:
                        runs.append(run_cell(ctx, s, cell, rep))
        finally:
            for s in servers:
                s.stop()
    return {"runs": runs, "servers": servers_used}


# ---- summary ----

METRICS = ["iops", "MBps", "lat_mean_us", "lat_p99_us",
           "srv_cpu_us_per_io", "cli_cpu_us_per_io"]


def summarize(runs):
    """Median over repeats of each metric, per (backend, cell, server)."""
    groups = {}
    for r in runs:
        key = (r["backend"], r["workload"], r["qd"], r["conns"], r["server"])
        groups.setdefault(key, []).append(r)
    out = []
    for key, rs in groups.items():
        row = {k: rs[0][k] for k in ("backend", "workload", "rw", "bs", "qd",
                                      "conns", "server", "sweep")}
        row["n"] = len(rs)
        for m in METRICS:
            row[m] = bl.median([r[m] for r in rs])
            row[m + "_all"] = [r[m] for r in rs]
        out.append(row)
    # ratios within each cell
    cellmap = {}
    for row in out:
        cellmap.setdefault((row["backend"], row["workload"], row["qd"], row["conns"]), []).append(row)
    for rows in cellmap.values():
        peers = [r for r in rows if r["server"] != "nbdd"]
        best = max(peers, key=lambda r: r["iops"]) if peers else None
        kit = next((r for r in rows if r["server"] == "nbdkit"), None)
        for r in rows:
            r["best_peer"] = best["server"] if best else None
            r["x_best_peer"] = r["iops"] / best["iops"] if best and best["iops"] else None
            r["x_nbdkit"] = r["iops"] / kit["iops"] if kit and kit["iops"] else None
            r["cpu_vs_nbdkit"] = (r["srv_cpu_us_per_io"] / kit["srv_cpu_us_per_io"]
                                  if kit and kit["srv_cpu_us_per_io"] else None)
    order = {s: i for i, s in enumerate(SERVERS)}
    wl = {w: i for i, w in enumerate(WORKLOADS)}
    bk = {"mem": 0, "file": 1, "null": 2}
    out.sort(key=lambda r: (r["sweep"], bk.get(r["backend"], 9), wl[r["workload"]],
                            r["qd"], r["conns"], order.get(r["server"], 9)))
    return out


def render(summary, sweep=False):
    headers = ["workload", "backend", "QD", "conns", "server", "IOPS", "MB/s",
               "mean us", "p99 us", "srv CPU us/IO", "cli CPU us/IO",
               "x best peer", "CPU / nbdkit"]
    rows = []
    for r in summary:
        if r["sweep"] != sweep:
            continue
        rows.append([r["workload"], r["backend"], str(r["qd"]), str(r["conns"]),
                     r["server"], bl.fmt(r["iops"], 0), bl.fmt(r["MBps"], 0),
                     bl.fmt(r["lat_mean_us"], 1), bl.fmt(r["lat_p99_us"], 1),
                     bl.fmt(r["srv_cpu_us_per_io"], 2), bl.fmt(r["cli_cpu_us_per_io"], 2),
                     bl.fmt(r["x_best_peer"], 2), bl.fmt(r["cpu_vs_nbdkit"], 2)])
    align = ["l", "l", "r", "r", "l"] + ["r"] * 8
    return bl.table(headers, rows, align)
