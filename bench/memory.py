# SPDX-License-Identifier: LGPL-2.1-or-later
"""Memory: the daemon's RSS idle, and a memory:size=1T backend's RSS after
1 GiB has been written to it (sparse must mean sparse), next to nbdkit's
memory plugin for reference. Network path; the kernel path's 64-mapping
figure comes from kernel-vm.sh.

Two ways of writing the 1 GiB: sequentially from offset 0 (1 MiB writes),
and as 4 KiB writes at random offsets over the whole 1 TiB, which shows
what a sparse store costs per page when nothing is contiguous.
"""
import os
import time

import benchlib as bl


def _server(ctx, name, tag, spec_size):
    w = ctx.workdir
    sock = f"{w}/mem-{name}-{tag}.sock"
    if name == "nbdd":
        argv = [ctx.opts.nbdd, "--control", f"{w}/mem-nbdd-{tag}-control.sock",
                "--listen", f"unix:{sock}", "--export", f"bench=memory:size={spec_size}"]
    else:
        argv = ["nbdkit", "--foreground", "--unix", sock, "memory", f"size={spec_size}"]
    return bl.Server(ctx, name, f"memory-{tag}", f"memory:size={spec_size}", argv, sock)


def _rss(pid):
    # Let freed memory and lazily-touched pages settle before reading.
    time.sleep(0.3)
    return bl.rss_kb(pid)


def idle_rss(ctx):
    """nbdd with only its control socket, then with a 1T memory export."""
    out = {}
    w = ctx.workdir
    argv = [ctx.opts.nbdd, "--control", f"{w}/idle-control.sock"]
    s = bl.Server(ctx, "nbdd", "idle", "no export", argv, f"{w}/idle-control.sock")
    s.start()
    try:
        out["nbdd_idle_rss_kb"] = _rss(s.pid)
        out["nbdd_idle_threads"] = bl.threads(s.pid)
    finally:
        s.stop()
    return out


def written(ctx, name, pattern):
    o = ctx.opts
    s = _server(ctx, name, pattern, "1T")
    s.start()
    try:
        before = _rss(s.pid)
        out = os.path.join(ctx.logdir, ctx.next_name(f"mem-{name}-{pattern}") + ".json")
        if pattern == "seq":
            argv = bl.fio_argv("fill", s.uri, "write", "1m", 8, 1, 0, "1g", out)
        else:
            # 262144 writes of 4 KiB at random offsets in 1 TiB = 1 GiB
            argv = bl.fio_argv("scatter", s.uri, "randwrite", "4k", 32, 1, 0, "1t",
                               out, extra=["--io_size=1g"])
        t0 = time.monotonic()
        d, _ = bl.run_fio(ctx, argv, timeout=900, comment=f"{name}: write 1 GiB ({pattern})")
        secs = time.monotonic() - t0
        m = bl.fio_metrics(d, "write")
        after = _rss(s.pid)
        anon = bl.status_kb(s.pid, "RssAnon")
        data_kb = m["ios"] * (1024 if pattern == "seq" else 4)
        return {"server": name, "pattern": pattern, "written_kb": data_kb,
                "rss_before_kb": before, "rss_after_kb": after, "rss_anon_kb": anon,
                "overhead_pct": (after - before - data_kb) / data_kb * 100,
                "seconds": secs, "command": " ".join(argv)}
    finally:
        s.stop()


def run(ctx):
    res = {"rows": []}
    if ctx.opts.nbdd:
        ctx.note("== memory: nbdd idle")
        res.update(idle_rss(ctx))
    for pattern in ("seq", "scatter"):
        for name in ("nbdd", "nbdkit"):
            if name == "nbdd" and not ctx.opts.nbdd:
                continue
            if name not in ctx.opts.only:
                continue
            ctx.note(f"== memory: {name} memory:size=1T, write 1 GiB ({pattern})")
            r = written(ctx, name, pattern)
            print(f"  -> RSS {r['rss_before_kb']} KiB -> {r['rss_after_kb']} KiB "
                  f"({r['overhead_pct']:+.1f}% over the data)", flush=True)
            res["rows"].append(r)
    return res


def render(res):
    lines = []
    if "nbdd_idle_rss_kb" in res:
        lines.append(f"nbdd idle (control socket only): RSS {res['nbdd_idle_rss_kb']} KiB, "
                     f"{res['nbdd_idle_threads']} threads")
        lines.append("")
    headers = ["server", "1 GiB written as", "RSS before KiB", "RSS after KiB",
               "after - before - data", "overhead"]
    rows = []
    for r in res["rows"]:
        rows.append([r["server"], "1 MiB sequential" if r["pattern"] == "seq"
                     else "4 KiB random over 1 TiB",
                     bl.fmt(r["rss_before_kb"], 0), bl.fmt(r["rss_after_kb"], 0),
                     bl.fmt(r["rss_after_kb"] - r["rss_before_kb"] - r["written_kb"], 0) + " KiB",
                     f"{r['overhead_pct']:+.1f}%"])
    if rows:
        lines.append(bl.table(headers, rows, ["l", "l", "r", "r", "r", "r"]))
    return "\n".join(lines)
