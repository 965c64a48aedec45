# SPDX-License-Identifier: LGPL-2.1-or-later
"""Ceph RBD: one image on a throw-away one-node cluster (tests/ceph/cluster.sh),
served by nbdd's rbd backend and by qemu-nbd's rbd driver, driven by fio's nbd
engine over a Unix socket; fio's own rbd engine (librbd in fio, no NBD hop) is
the ceiling. One server runs at a time (they share the image and its
exclusive lock), each through every workload, repeats interleaved by server.

All three run with the same librbd cache (--rbd-cache): off by default, as
nbdd's rbd backend runs, so a write is acknowledged once an OSD has it;
"on" gives each librbd's write-around cache (nbdd cache=on, qemu-nbd
--cache=writeback, fio's engine as it comes).
"""
import os
import shutil
import subprocess

import benchlib as bl

# name -> (fio rw, block size, queue depth)
WORKLOADS = {
    "4k-randread": ("randread", "4k", 32),
    "4k-randwrite": ("randwrite", "4k", 32),
    "1M-read": ("read", "1m", 8),
    "1M-write": ("write", "1m", 8),
}
SERVERS = ["nbdd", "qemu-nbd", "fio-rbd"]
CLUSTER = os.path.join(bl.TOP, "tests", "ceph", "cluster.sh")
IMAGE = "bench"


def start_cluster(ctx):
    d = os.path.join(ctx.workdir, "ceph")
    argv = [CLUSTER, "start", d, str(os.getpid())]
    ctx.cmd(argv, "a one-node Ceph cluster (mon, mgr, one BlueStore OSD)")
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    if p.returncode != 0:
        bl.die("the Ceph cluster did not start: "
               + p.stderr.decode(errors="replace")[-1500:])
    env = dict(line.split("=", 1) for line in subprocess.run(
        [CLUSTER, "env", d], stdout=subprocess.PIPE, check=True
    ).stdout.decode().split("\n") if "=" in line)
    env["dir"] = d
    ctx.note(f"Ceph cluster up in {env.get('CEPH_START_SECONDS')} s: {env['CEPH_CONF']}")
    return env


def rbd_cli(ctx, env, *args):
    argv = ["rbd", "-c", env["CEPH_CONF"], "--id", env["CEPH_ID"],
            "--keyring", env["CEPH_KEYRING"], *args]
    ctx.cmd(argv)
    subprocess.run(argv, check=True, timeout=120, stdout=subprocess.DEVNULL)


def make_server(ctx, name, env):
    o = ctx.opts
    w = ctx.workdir
    sock = f"{w}/{name}-rbd.sock"
    pool, conf = env["CEPH_POOL"], env["CEPH_CONF"]
    ident, keyring = env["CEPH_ID"], env["CEPH_KEYRING"]
    cache_on = o.rbd_cache == "on"
    if name == "nbdd":
        spec = (f"rbd:pool={pool},image={IMAGE},conf={conf},id={ident},"
                f"keyring={keyring}" + (",cache=on" if cache_on else ""))
        argv = [o.nbdd, "--control", f"{w}/nbdd-control-rbd.sock",
                "--plugin-dir", os.path.join(o.build, "plugins"),
                "--listen", f"unix:{sock}", "--export", f"bench={spec}"]
        return bl.Server(ctx, name, "rbd", "rbd plugin (librbd aio)", argv, sock)
    if name == "qemu-nbd":
        # qemu's rbd driver sets rbd_cache from --cache: none = off.
        target = f"rbd:{pool}/{IMAGE}:conf={conf}:id={ident}:keyring={keyring}"
        argv = ["qemu-nbd", "--socket", sock, "--export-name", "bench",
                "--shared", "16", "--persistent", "-f", "raw",
                "--cache=writeback" if cache_on else "--cache=none",
                "--aio=threads", target]
        return bl.Server(ctx, name, "rbd", "qemu's rbd driver", argv, sock)
    raise ValueError(name)


def fio_rbd_argv(env, name, rw, bs, qd, runtime, size, out, cache="off"):
    # fio's rbd engine reads the cluster from CEPH_CONF and its key (and,
    # with the cache off for nbdd and qemu-nbd, rbd_cache) from CEPH_ARGS;
    # they are part of the command so that it can be repeated as printed.
    args = f"--keyring {env['CEPH_KEYRING']}" + (
        "" if cache == "on" else " --rbd_cache=false")
    return ["env", f"CEPH_CONF={env['CEPH_CONF']}", f"CEPH_ARGS={args}",
            "fio", f"--name={name}", "--ioengine=rbd",
            f"--clientname={env['CEPH_ID']}", f"--pool={env['CEPH_POOL']}",
            f"--rbdname={IMAGE}", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}",
            "--numjobs=1", "--group_reporting",
            *(["--time_based", f"--runtime={runtime}"] if runtime else []),
            *(["--norandommap", "--randrepeat=0"] if rw.startswith("rand") else []),
            f"--size={size}", "--output-format=json", f"--output={out}"]


def run_one(ctx, env, server, wl, rep):
    o = ctx.opts
    rw, bs, qd = WORKLOADS[wl]
    tag = f"rbd-{wl}-qd{qd}-{server.name if server else 'fio-rbd'}-r{rep}"
    out = os.path.join(ctx.logdir, ctx.next_name(tag) + ".json")
    if server:
        argv = bl.fio_argv(wl, server.uri, rw, bs, qd, 1, o.runtime, o.ws, out)
        server.settle()
        c0 = server.cpu()
    else:
        argv = fio_rbd_argv(env, wl, rw, bs, qd, o.runtime, o.ws, out,
                            o.rbd_cache)
    d, cli = bl.run_fio(ctx, argv, timeout=o.runtime + 180,
                        comment=f"{server.name if server else 'fio rbd engine'} rbd")
    srv = None
    if server:
        server.settle()
        srv = server.cpu() - c0
        if not server.alive():
            bl.die(f"{server.name} died during {tag}; log {server.log}")
    m = bl.fio_metrics(d, rw)
    ios = max(m["ios"], 1)
    m.update({
        "server": server.name if server else "fio-rbd", "workload": wl, "rw": rw,
        "bs": bs, "qd": qd, "repeat": rep,
        "srv_cpu_us_per_io": srv / ios * 1e6 if srv is not None else None,
        "cli_cpu_us_per_io": cli / ios * 1e6,
        "fio_json": os.path.relpath(out, ctx.outdir), "command": " ".join(argv),
    })
    srv_txt = f"{m['srv_cpu_us_per_io']:.1f}" if srv is not None else "-"
    print(f"  -> {m['server']:10s} {wl:13s} {m['iops']:>9,.0f} IOPS {m['MBps']:>7,.0f} MB/s "
          f"lat {m['lat_mean_us']:.0f}/{m['lat_p99_us']:.0f} us  srv {srv_txt} us/IO  "
          f"cli {m['cli_cpu_us_per_io']:.1f} us/IO", flush=True)
    return m


def run(ctx):
    o = ctx.opts
    env = start_cluster(ctx)
    runs, servers_used = [], {}
    names = [n for n in SERVERS if n in o.only or n == "fio-rbd"]
    if "qemu-nbd" in names and not qemu_has_rbd():
        ctx.note("qemu-nbd: no rbd driver (qemu-block-extra is not installed); skipped")
        names.remove("qemu-nbd")
    try:
        rbd_cli(ctx, env, "create", "--size", o.size, f"{env['CEPH_POOL']}/{IMAGE}")
        # Written once, so reads find objects rather than holes.
        pre = os.path.join(ctx.logdir, "rbd-prefill.json")
        bl.run_fio(ctx, fio_rbd_argv(env, "prefill", "write", "4m", 8, 0, o.ws, pre),
                   timeout=600, comment="prefill the image")
        for rep in range(o.repeat):
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                s = make_server(ctx, name, env) if name != "fio-rbd" else None
                if s:
                    s.start()
                    servers_used[name] = {"argv": s.argv, "desc": s.desc}
                try:
                    for wl in o.rbd_workloads:
                        runs.append(run_one(ctx, env, s, wl, rep))
                finally:
                    if s:
                        s.stop()
    finally:
        subprocess.run([CLUSTER, "stop", env["dir"]], timeout=120)
    return {"runs": runs, "servers": servers_used, "cache": o.rbd_cache,
            "cluster_start_s": env.get("CEPH_START_SECONDS")}


def qemu_has_rbd():
    if not shutil.which("qemu-nbd"):
        return False
    p = subprocess.run(["qemu-img", "--help"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    return b" rbd" in p.stdout


def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["server"]), []).append(r)
    out = []
    for (wl, server), rs in groups.items():
        row = {"workload": wl, "server": server, "qd": rs[0]["qd"], "n": len(rs)}
        for m in ("iops", "MBps", "lat_mean_us", "lat_p99_us", "cli_cpu_us_per_io"):
            row[m] = bl.median([r[m] for r in rs])
        srv = [r["srv_cpu_us_per_io"] for r in rs if r["srv_cpu_us_per_io"] is not None]
        row["srv_cpu_us_per_io"] = bl.median(srv) if srv else None
        out.append(row)
    by = {(r["workload"], r["server"]): r for r in out}
    for r in out:
        ceil = by.get((r["workload"], "fio-rbd"))
        qemu = by.get((r["workload"], "qemu-nbd"))
        r["x_fio_rbd"] = r["iops"] / ceil["iops"] if ceil and ceil["iops"] else None
        r["x_qemu_nbd"] = r["iops"] / qemu["iops"] if qemu and qemu["iops"] else None
    order = {s: i for i, s in enumerate(SERVERS)}
    wls = {w: i for i, w in enumerate(WORKLOADS)}
    out.sort(key=lambda r: (wls[r["workload"]], order[r["server"]]))
    return out


def render(summary):
    headers = ["workload", "QD", "server", "IOPS", "MB/s", "mean us", "p99 us",
               "srv CPU us/IO", "cli CPU us/IO", "x fio-rbd", "x qemu-nbd"]
    rows = [[r["workload"], str(r["qd"]), r["server"], bl.fmt(r["iops"], 0),
             bl.fmt(r["MBps"], 0), bl.fmt(r["lat_mean_us"], 0), bl.fmt(r["lat_p99_us"], 0),
             bl.fmt(r["srv_cpu_us_per_io"], 1), bl.fmt(r["cli_cpu_us_per_io"], 1),
             bl.fmt(r["x_fio_rbd"], 2), bl.fmt(r["x_qemu_nbd"], 2)] for r in summary]
    return bl.table(headers, rows, ["l", "r", "l"] + ["r"] * 8)


def targets(summary):
    """nbdd at >= 0.9x fio's rbd engine on every workload."""
    out = []
    for r in summary:
        if r["server"] != "nbdd" or r["x_fio_rbd"] is None:
            continue
        ok = r["x_fio_rbd"] >= 0.9
        q = f", {r['x_qemu_nbd']:.2f}x qemu-nbd" if r["x_qemu_nbd"] else ""
        out.append(f"{'MET   ' if ok else 'MISSED'} rbd {r['workload']} QD{r['qd']}: "
                   f"{r['iops']:,.0f} IOPS = {r['x_fio_rbd']:.2f}x fio's rbd engine{q} "
                   "(target >= 0.9x)")
    return out
