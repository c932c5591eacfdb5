#!/usr/bin/env python3
"""ckstore benchmark: put, get, LAWA, filters and store-size scaling on a generated GPT-2 trajectory.

    Tools/bench/run.sh [--scale 1] [--runs 3] [--keep DIR] [--json PATH] [--ckstore BIN] …

Every comparison runs on the same files in the same session, interleaved (ckstore, then each
baseline, then ckstore again, …); the table shows the median of the runs and the JSON file keeps
every sample. Before every timed command the script calls sync(2) untimed, so that no command
pays for another's write-back. The page cache is NOT dropped (that needs root): "cold" means the
first computation of a result, with the input files (or blobs) in a warm page cache.

Wall time is measured around fork/exec/wait (perf_counter); peak RSS is `/usr/bin/time -f %M`. MB = 10^6 bytes; throughput counts logical bytes (the size
of the safetensors files).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import generate  # noqa: E402

import numpy as np  # noqa: E402

STRIDE = 1000          # training steps between generated snapshots (generate.py --interval)
LAWA_K = 6
SCALING_KS = (2, 4, 6, 12)
FILTERS = ("none", "byteshuffle", "bitshuffle", "hybrid")
TINY_SIZES = (10, 100, 1000)


# ----------------------------------------------------------------------------- measuring

class CommandFailed(RuntimeError):
    pass


TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def timed(cmd, *, shell: bool = False, stdout=subprocess.DEVNULL, sync_first: bool = True,
          rss: bool = True) -> dict:
    """Run cmd; return {"wall_s", "maxrss_kb"}. Raises CommandFailed on a non-zero exit.

    Peak RSS comes from `/usr/bin/time -f %M`: a child forked straight from this (large) Python
    process would report the parent's RSS, since Linux carries the pre-exec high-water mark
    into ru_maxrss."""
    if sync_first:
        os.sync()
    argv = ["/bin/bash", "-c", cmd] if shell else list(cmd)
    with tempfile.NamedTemporaryFile(prefix="ckbench-time-") as tf, tempfile.TemporaryFile() as err:
        if rss and TIME_BIN:
            argv = [TIME_BIN, "-f", "%e %M", "-o", tf.name] + argv
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=stdout, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip()
            raise CommandFailed(f"{cmd!r} exited {code}: {msg[-2000:]}")
        maxrss = None
        if rss and TIME_BIN:
            maxrss = int(open(tf.name).read().split()[-1])
        elif rss:
            maxrss = ru.ru_maxrss  # upper bound (includes this process's pre-exec RSS)
    return {"wall_s": wall, "maxrss_kb": maxrss}


def output(cmd) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def quiet(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- environment

def machine_info(ckstore: str, work: str) -> dict:
    def cpuinfo_model():
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return ""

    def meminfo():
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    lscpu_model = ""
    for line in quiet(["lscpu"]).splitlines():
        if line.lower().startswith("model name"):
            lscpu_model = line.split(":", 1)[1].strip()
    import safetensors
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": quiet(["nproc"]),
        "cpu_count": os.cpu_count(),
        "cpu_model_proc_cpuinfo": cpuinfo_model(),
        "cpu_model_lscpu": lscpu_model,
        "mem_total_bytes": meminfo(),
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "loadavg_start": os.getloadavg(),
        "work_filesystem": quiet(["findmnt", "-no", "FSTYPE,SOURCE", "-T", work]),
        "git_commit": quiet(["git", "-C", REPO, "rev-parse", "HEAD"]),
        "git_dirty_files": len(quiet(["git", "-C", REPO, "status", "--porcelain"]).splitlines()),
        "ckstore_binary": ckstore,
        "ckstore_version": quiet([ckstore, "--version"]),
        "ckstore_binary_mtime": datetime.datetime.fromtimestamp(
            os.path.getmtime(ckstore), datetime.timezone.utc).isoformat(timespec="seconds"),
        "lz4_version": quiet(["lz4", "--version"]) or quiet(["lz4", "-V"]),
        "openssl_version": quiet(["openssl", "version"]),
        "coreutils_version": quiet(["sha256sum", "--version"]).split("\n")[0],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }


def find_ckstore(arg: str | None) -> str:
    for cand in (arg, os.environ.get("CKSTORE_BIN"),
                 os.path.join(REPO, ".build", "release", "ckstore"), shutil.which("ckstore")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    sys.exit("run.py: no ckstore binary: pass --ckstore BIN, set CKSTORE_BIN, or "
             "`swift build -c release` first")


# ----------------------------------------------------------------------------- data

def ensure_trajectory(folder: str, steps: int, dtype: str, scale: float, seed: int) -> list[str]:
    """Generate (or reuse, when --keep kept an identical one) a trajectory; return its paths."""
    stamp = {"steps": steps, "dtype": dtype, "scale": scale, "seed": seed, "interval": STRIDE,
             "generator_mtime": os.path.getmtime(generate.__file__)}
    stamp_path = os.path.join(folder, "params.json")
    paths = [os.path.join(folder, f"step{k * STRIDE:06d}.safetensors") for k in range(steps)]
    try:
        if json.load(open(stamp_path)) == stamp and all(map(os.path.exists, paths)):
            log(f"reusing {folder}")
            return paths
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    generate.generate(folder, steps, dtype, scale, seed, STRIDE, quiet=True)
    log(f"generated {steps} {dtype} snapshots at scale {scale} in {folder} "
        f"({time.perf_counter() - t0:.1f} s)")
    json.dump(stamp, open(stamp_path, "w"))
    return paths


def step_of(path: str) -> int:
    return int(os.path.basename(path)[4:10])


class Store:
    def __init__(self, ckstore: str, path: str, float_filter: str | None = None):
        self.bin, self.path = ckstore, path
        shutil.rmtree(path, ignore_errors=True)
        output([ckstore, "--store", path, "init"])
        if float_filter is not None:
            cfg_path = os.path.join(path, "config.json")
            cfg = json.load(open(cfg_path))
            cfg["compression"]["float_filter"] = float_filter
            json.dump(cfg, open(cfg_path, "w"), indent=2)

    def cmd(self, *args) -> list[str]:
        return [self.bin, "--store", self.path, *args]

    def put(self, path: str, run: str = "bench", step: int | None = None) -> dict:
        step = step_of(path) if step is None else step
        return timed(self.cmd("put", "--quiet", "--run", run, "--step", str(step), path))

    def stats(self) -> dict:
        return json.loads(output(self.cmd("stats", "--json")))

    def lawa(self, k: int, at: int, out: str, cache: bool, run: str = "bench") -> dict:
        args = ["get", "--quiet", "--run", run, "--lawa", f"k={k},stride={STRIDE}", "--at", str(at),
                "-o", out]
        return timed(self.cmd(*args) + ([] if cache else ["--no-cache"]))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def numpy_lawa(inputs: list[str], out: str) -> dict:
    return timed([sys.executable, os.path.join(HERE, "numpy_lawa.py"), "-o", out, *inputs])


def rm(*paths: str) -> None:
    for p in paths:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def same_tensors(a: str, b: str) -> dict:
    """Compare the tensors of two safetensors files (ignoring metadata)."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, for BF16 files)
    from safetensors.numpy import load_file
    x, y = load_file(a), load_file(b)
    if x.keys() != y.keys():
        return {"identical": False, "reason": "different tensor names"}
    differing, max_abs = 0, 0.0
    for name in x:
        u, v = x[name], y[name]
        if u.dtype != v.dtype or u.shape != v.shape:
            return {"identical": False, "reason": f"{name}: dtype or shape differs"}
        bu, bv = u.view(np.uint8), v.view(np.uint8)
        if not np.array_equal(bu, bv):
            differing += 1
            max_abs = max(max_abs, float(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)))))
    return {"identical": differing == 0, "tensors_differing": differing, "max_abs_diff": max_abs}


# ----------------------------------------------------------------------------- sections

def bench_main(a, ckstore, work, f32, raw) -> None:
    """Sections 1–4 (put, get, LAWA, k scaling) in one fresh store per run, interleaved."""
    out = os.path.join(work, "out")
    os.makedirs(out, exist_ok=True)
    last = f32[-1]
    at = step_of(last)
    lawa_inputs = f32[-LAWA_K:]
    lz4_last = os.path.join(out, "last.lz4")
    subprocess.run(["lz4", "-1", "-q", "-f", last, lz4_last], check=True)
    ks = [k for k in SCALING_KS if k <= len(f32)]
    for r in range(a.runs):
        log(f"run {r + 1}/{a.runs}: put")
        store = Store(ckstore, os.path.join(work, "store-main"))
        raw["store_config"] = json.load(open(os.path.join(store.path, "config.json")))
        put_methods = {
            "ckstore put": lambda f: store.put(f),
            "cp + sync": lambda f: timed(f"cp '{f}' '{out}/cp.dst' && sync", shell=True),
            "cp + fsync(dst)": lambda f: timed(f"cp '{f}' '{out}/cp.dst' && sync '{out}/cp.dst'",
                                               shell=True),
            "lz4 -1": lambda f: timed(["lz4", "-1", "-q", "-f", f, f"{out}/x.lz4"]),
            "sha256sum": lambda f: timed(["sha256sum", f]),
            "openssl sha256": lambda f: timed(["openssl", "dgst", "-sha256", f]),
        }
        names = list(put_methods)
        run_samples = {n: [] for n in names}
        for i, f in enumerate(f32):
            for n in names[i % len(names):] + names[:i % len(names)]:   # rotate the order
                s = put_methods[n](f)
                s["bytes"] = os.path.getsize(f)
                s["file"] = os.path.basename(f)
                run_samples[n].append(s)
                rm(f"{out}/cp.dst", f"{out}/x.lz4")
        for n in names:
            raw["put"].setdefault(n, []).append(run_samples[n])
        raw["put_stats"].append(store.stats())

        log(f"run {r + 1}/{a.runs}: get")
        get_methods = {
            "ckstore get": lambda: timed(store.cmd("get", f"bench@{at}", "-o", f"{out}/get.dst")),
            "lz4 -d": lambda: timed(["lz4", "-d", "-q", "-f", lz4_last, f"{out}/get.dst"]),
            "cat > dst": lambda: timed(f"cat '{last}' > '{out}/get.dst'", shell=True),
            "cp": lambda: timed(["cp", last, f"{out}/get.dst"]),
        }
        for n, fn in get_methods.items():
            s = fn()
            s["bytes"] = os.path.getsize(last)
            if n == "ckstore get" and r == 0:
                s["byte_exact"] = subprocess.run(["cmp", "-s", last, f"{out}/get.dst"]).returncode == 0
            raw["get"].setdefault(n, []).append(s)
            rm(f"{out}/get.dst")

        log(f"run {r + 1}/{a.runs}: LAWA k={LAWA_K}")
        ck_out, np_out = f"{out}/lawa-ck.safetensors", f"{out}/lawa-np.safetensors"
        seq = [
            ("ckstore --no-cache", lambda: store.lawa(LAWA_K, at, ck_out, cache=False)),
            ("numpy_lawa.py", lambda: numpy_lawa(lawa_inputs, np_out)),
            ("ckstore first (computes, caches)", lambda: store.lawa(LAWA_K, at, ck_out, cache=True)),
            ("ckstore cached repeat", lambda: store.lawa(LAWA_K, at, ck_out, cache=True)),
        ]
        for n, fn in seq:
            raw["lawa_f32"].setdefault(n, []).append(fn())
        if r == 0:
            raw["lawa_f32_check"] = same_tensors(ck_out, np_out)
        rm(ck_out, np_out)

        log(f"run {r + 1}/{a.runs}: LAWA k scaling {ks}")
        for k in ks:
            s = store.lawa(k, at, ck_out, cache=False)
            raw["scaling"].setdefault(f"ckstore k={k}", []).append(s)
            s = numpy_lawa(f32[-k:], np_out)
            raw["scaling"].setdefault(f"numpy k={k}", []).append(s)
            rm(ck_out, np_out)
        if not a.keep:
            store.remove()


def bench_filters(a, ckstore, work, trajectories, raw) -> None:
    """stored/raw and put throughput per float_filter, f32 and bf16; LAWA on bf16."""
    out = os.path.join(work, "out")
    for r in range(a.runs):
        for dtype, files in trajectories.items():
            for flt in FILTERS:
                log(f"run {r + 1}/{a.runs}: filter {flt}, {dtype}")
                store = Store(ckstore, os.path.join(work, f"store-{dtype}-{flt}"), float_filter=flt)
                samples = []
                for f in files:
                    s = store.put(f)
                    s["bytes"] = os.path.getsize(f)
                    samples.append(s)
                key = f"{dtype} {flt}"
                raw["filters"].setdefault(key, {"put": [], "stats": []})
                raw["filters"][key]["put"].append(samples)
                raw["filters"][key]["stats"].append(store.stats())
                if dtype == "bf16" and flt == "bitshuffle":
                    at = step_of(files[-1])
                    ck_out, np_out = f"{out}/lawa-ck.safetensors", f"{out}/lawa-np.safetensors"
                    raw["lawa_bf16"].setdefault("ckstore --no-cache", []).append(
                        store.lawa(len(files), at, ck_out, cache=False))
                    raw["lawa_bf16"].setdefault("numpy_lawa.py", []).append(
                        numpy_lawa(files, np_out))
                    if r == 0:
                        raw["lawa_bf16_check"] = same_tensors(ck_out, np_out)
                    rm(ck_out, np_out)
                if not a.keep:
                    store.remove()


def bench_tiny(a, ckstore, work, raw) -> None:
    """Tiny snapshots: ls/show/get latency with 10, 100 and 1000 snapshots in the store.

    One store per size, filled with the same sequence of ~4 KB files (step 500 first, so the
    probe exists in every store); the queries then alternate between the stores."""
    probe = 500
    steps = [probe] + [s for s in range(max(TINY_SIZES)) if s != probe]
    tiny = os.path.join(work, "tiny.safetensors")
    stores = {}
    for n in TINY_SIZES:
        log(f"tiny store: {n} puts")
        store = stores[n] = Store(ckstore, os.path.join(work, f"store-tiny-{n}"))
        rng = np.random.default_rng(a.seed + 1)
        put_times = []
        for step in steps[:n]:
            w = (rng.standard_normal((32, 32)) * 0.02).astype(np.float32)
            b = (rng.standard_normal(32) * 0.02).astype(np.float32)
            generate.write_safetensors(tiny, [("w", "F32", w), ("b", "F32", b)], {"step": str(step)})
            put_times.append(store.put(tiny, run="tiny", step=step)["wall_s"])
        raw["tiny"][f"put_wall_s @{n}"] = put_times
    raw["tiny"]["file_bytes"] = os.path.getsize(tiny)

    def queries(st):
        return {
            "ls --run R --json": st.cmd("ls", "--run", "tiny", "--json"),
            f"show R@{probe}": st.cmd("show", f"tiny@{probe}"),
            f"get R@{probe} -o /dev/null": st.cmd("get", f"tiny@{probe}", "-o", "/dev/null"),
            "ls": st.cmd("ls"),
        }
    reps = max(15, 3 * a.runs)
    log(f"tiny stores: {reps} rounds of queries")
    for _ in range(reps):
        for n, st in stores.items():
            for name, cmd in queries(st).items():
                s = timed(cmd, sync_first=False, rss=False)
                raw["tiny"].setdefault(f"{name} @{n}", []).append(s)
    if not a.keep:
        for st in stores.values():
            st.remove()


# ----------------------------------------------------------------------------- report

def summarize(raw: dict, params: dict) -> tuple[list[list[str]], list[list[str]]]:
    rows: list[list[str]] = []
    checks: list[list[str]] = []

    def mbps(samples_per_run):
        return [sum(s["bytes"] for s in run) / 1e6 / sum(s["wall_s"] for s in run)
                for run in samples_per_run]

    def rng_(xs, fmt):
        return f"{fmt.format(min(xs))}–{fmt.format(max(xs))}" if len(xs) > 1 else ""

    nfiles = len(raw["put"]["ckstore put"][0]) if raw["put"] else 0
    fmb = params.get("f32_file_mb", 0)
    put_mb = {}
    for n, runs in raw["put"].items():
        xs = mbps(runs)
        put_mb[n] = med(xs)
        rows.append([f"put {nfiles} × {fmb:.0f} MB f32", n, f"{med(xs):.0f} MB/s", rng_(xs, "{:.0f}"),
                     f"{put_mb[n] / put_mb['ckstore put']:.2f}× ckstore" if n != "ckstore put" else ""])
    if raw["put_stats"]:
        st = raw["put_stats"][-1]
        rows.append([f"put {nfiles} × {fmb:.0f} MB f32", "stored / raw (default filter: hybrid)",
                     f"{st['compression_ratio']:.3f}", "",
                     f"stored/logical {st['stored_bytes'] / st['logical_bytes']:.3f}"])
    get_mb = {}
    for n, samples in raw["get"].items():
        xs = [s["bytes"] / 1e6 / s["wall_s"] for s in samples]
        get_mb[n] = med(xs)
        note = f"{get_mb[n] / get_mb['ckstore get']:.2f}× ckstore" if n != "ckstore get" else \
            ("byte-exact" if samples[0].get("byte_exact") else "NOT byte-exact")
        rows.append([f"get 1 × {fmb:.0f} MB f32", n, f"{med(xs):.0f} MB/s", rng_(xs, "{:.0f}"), note])

    def lawa_rows(section, title, check_key):
        res = {}
        for n, samples in raw[section].items():
            w = [s["wall_s"] for s in samples]
            m = [s["maxrss_kb"] / 1024 for s in samples]
            res[n] = (med(w), max(m))
            rows.append([title, n, f"{med(w):.2f} s", rng_(w, "{:.2f}"),
                         f"peak RSS {max(m):.0f} MiB"])
        chk = raw.get(check_key)
        if chk:
            rows.append([title, "ckstore output vs numpy_lawa.py",
                         "identical" if chk["identical"] else "differs", "",
                         "" if chk["identical"] else
                         f"{chk['tensors_differing']} tensors, max |Δ| {chk['max_abs_diff']:.3g}"])
        return res

    lawa = lawa_rows("lawa_f32", f"LAWA k={LAWA_K} f32", "lawa_f32_check") if raw["lawa_f32"] else {}
    lawa_b = lawa_rows("lawa_bf16", f"LAWA k={LAWA_K} bf16", "lawa_bf16_check") if raw["lawa_bf16"] else {}

    for k in SCALING_KS:
        ck, npy = raw["scaling"].get(f"ckstore k={k}"), raw["scaling"].get(f"numpy k={k}")
        if not ck:
            continue
        cw, nw = [s["wall_s"] for s in ck], [s["wall_s"] for s in npy]
        rows.append([f"LAWA scaling f32 (scale {params['scale']})", f"k={k} ckstore --no-cache",
                     f"{med(cw):.2f} s", rng_(cw, "{:.2f}"),
                     f"numpy {med(nw):.2f} s ({med(nw) / med(cw):.1f}×); "
                     f"RSS {max(s['maxrss_kb'] for s in ck) / 1024:.0f} vs "
                     f"{max(s['maxrss_kb'] for s in npy) / 1024:.0f} MiB"])

    ratios = {}
    for key, d in raw["filters"].items():
        st = d["stats"][-1]
        xs = mbps(d["put"])
        ratios[key] = st["compression_ratio"]
        rows.append(["filters", f"{key}: stored / raw", f"{st['compression_ratio']:.3f}", "",
                     f"put {med(xs):.0f} MB/s"])

    tiny_lat = {}
    for key, samples in raw["tiny"].items():
        if isinstance(samples, list) and samples and isinstance(samples[0], dict):
            tiny_lat[key] = med([x["wall_s"] * 1000 for x in samples])
    sizes = " / ".join(str(n) for n in TINY_SIZES)
    for q in dict.fromkeys(k.rsplit(" @", 1)[0] for k in tiny_lat):
        vals = [tiny_lat.get(f"{q} @{n}", float("nan")) for n in TINY_SIZES]
        rows.append([f"tiny snapshots ({sizes} in store)", q,
                     " / ".join(f"{v:.1f}" for v in vals) + " ms", "",
                     f"{vals[-1] / vals[0]:.2f}× from {TINY_SIZES[0]} to {TINY_SIZES[-1]}"])
    puts = [med([t * 1000 for t in raw["tiny"].get(f"put_wall_s @{n}", [])[-10:]] or [float("nan")])
            for n in TINY_SIZES]
    if raw["tiny"]:
        rows.append([f"tiny snapshots ({sizes} in store)", "put (median of the last 10 puts)",
                     " / ".join(f"{v:.1f}" for v in puts) + " ms", "",
                     f"{raw['tiny']['file_bytes']} B file"])

    # targets
    def chk(name, value, ok, target):
        checks.append([name, value, target, "met" if ok else "MISSED"])

    if lawa:
        npw = lawa["numpy_lawa.py"][0]
        for n in ("ckstore --no-cache", "ckstore first (computes, caches)"):
            chk(f"LAWA k=6 f32 speed-up, {n}", f"{npw / lawa[n][0]:.2f}× ({lawa[n][0]:.2f} s vs "
                f"{npw:.2f} s)", npw / lawa[n][0] >= 4, "≥ 4×")
        rss = max(lawa[n][1] for n in lawa if n.startswith("ckstore"))
        chk("LAWA k=6 f32 peak RSS (ckstore, any mode)", f"{rss:.0f} MiB", rss * 1.048576 < 300,
            "< 300 MB")
        c = lawa["ckstore cached repeat"][0]
        chk("LAWA cached repeat", f"{c:.3f} s", c < 0.5, "< 0.5 s")
    if put_mb:
        p = put_mb["ckstore put"]
        chk("put throughput", f"{p:.0f} MB/s", p >= 1000, "≥ 1000 MB/s")
        chk("put vs cp + sync", f"{p / put_mb['cp + sync']:.2f}× ({put_mb['cp + sync']:.0f} MB/s)",
            p >= put_mb["cp + sync"], "≥ 1×")
        chk("put vs cp + fsync(dst)",
            f"{p / put_mb['cp + fsync(dst)']:.2f}× ({put_mb['cp + fsync(dst)']:.0f} MB/s)",
            p >= put_mb["cp + fsync(dst)"], "≥ 1× (stricter reading)")
    if get_mb:
        g = get_mb["ckstore get"] / get_mb["cp"]
        chk("get vs cp", f"{g:.2f}× ({get_mb['ckstore get']:.0f} vs {get_mb['cp']:.0f} MB/s)", g >= 0.9,
            "≥ 0.9×")
    for dt, lim in (("f32", 0.88), ("bf16", 0.76)):
        if f"{dt} bitshuffle" in ratios:
            v = ratios[f"{dt} bitshuffle"]
            chk(f"stored/raw {dt} (default filter)", f"{v:.3f}", v <= lim, f"≤ {lim}")
    lo, hi = min(TINY_SIZES), max(TINY_SIZES)
    for q in (f"show R@500", f"get R@500 -o /dev/null"):
        if f"{q} @{lo}" in tiny_lat:
            x = tiny_lat[f"{q} @{hi}"] / tiny_lat[f"{q} @{lo}"]
            chk(f"{q}: latency @{hi} / @{lo}", f"{x:.2f}× ({tiny_lat[f'{q} @{hi}']:.1f} ms)",
                x <= 1.5, "flat (≤ 1.5×)")
    return rows, checks


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions (median reported; default 3)")
    ap.add_argument("--scale", type=float, default=1.0, help="generate.py --scale (1 = GPT-2 small)")
    ap.add_argument("--steps", type=int, default=12,
                    help="f32 snapshots to generate (≥ 12 for the k=12 scaling row; default 12)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", metavar="DIR",
                    help="work in DIR and keep it: generated files (reused by the next call with "
                         "the same --scale/--steps/--seed) and the last run's stores")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"),
                    help="raw results (default Tools/bench/results/latest.json)")
    ap.add_argument("--ckstore", help="binary (default $CKSTORE_BIN, .build/release/ckstore, PATH)")
    ap.add_argument("--skip", default="", help="comma-separated: main,filters,tiny,sweep")
    ap.add_argument("--sweep-scale", type=float, default=0.5,
                    help="generate.py --scale of the 24 snapshots of the sweep section (default 0.5)")
    a = ap.parse_args()
    if a.runs < 1 or a.steps < LAWA_K:
        ap.error(f"--runs ≥ 1 and --steps ≥ {LAWA_K}")
    skip = set(filter(None, a.skip.split(",")))
    for tool in ("lz4", "sha256sum", "openssl", "cp", "cat", "cmp"):
        if not shutil.which(tool):
            sys.exit(f"run.py: {tool} not found (run.sh installs lz4)")
    ckstore = find_ckstore(a.ckstore)

    if a.keep:
        work = os.path.abspath(a.keep)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="ckbench-")
    started = time.time()
    machine = machine_info(ckstore, work)
    log(f"ckstore {machine['ckstore_version']} at {ckstore}; work folder {work}")
    raw: dict = {"put": {}, "put_stats": [], "get": {}, "lawa_f32": {}, "lawa_bf16": {},
                 "scaling": {}, "filters": {}, "tiny": {}}
    try:
        f32 = ensure_trajectory(os.path.join(work, "data", "f32"), a.steps, "f32", a.scale, a.seed)
        bf16 = ensure_trajectory(os.path.join(work, "data", "bf16"), LAWA_K, "bf16", a.scale, a.seed)
        params = {"runs": a.runs, "scale": a.scale, "steps_f32": a.steps, "steps_bf16": LAWA_K,
                  "seed": a.seed, "stride": STRIDE, "lawa_k": LAWA_K, "work": work,
                  "f32_file_mb": os.path.getsize(f32[-1]) / 1e6,
                  "bf16_file_mb": os.path.getsize(bf16[-1]) / 1e6,
                  "params_per_snapshot": sum(int(np.prod(s)) for _, s in generate.gpt2_shapes(a.scale)),
                  "tiny_snapshots": max(TINY_SIZES)}
        if "main" not in skip:
            bench_main(a, ckstore, work, f32, raw)
        if "filters" not in skip:
            bench_filters(a, ckstore, work, {"f32": f32[-LAWA_K:], "bf16": bf16}, raw)
        if "tiny" not in skip:
            bench_tiny(a, ckstore, work, raw)
        if "sweep" not in skip:
            import sweep_bench
            raw["sweep"] = sweep_bench.bench_sweep(ckstore, work, a.sweep_scale, a.runs, a.seed)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()
    machine["duration_s"] = round(time.time() - started, 1)

    rows, checks = summarize(raw, params)
    if "sweep" in raw:
        import sweep_bench
        sweep_rows = sweep_bench.summary(raw["sweep"])
        rows += [["sweep", r[0], r[1], r[2], f"{r[3]} of the single LAWA; peak RSS {r[4]}; CPU {r[5]}"]
                 for r in sweep_rows]
        ratio = float(sweep_rows[1][3].rstrip("×"))
        checks.append(["sweep of 15 (k, ν) pairs vs one LAWA k=12 --no-cache", f"{ratio:.2f}×", "≤ 4×",
                       "met" if ratio <= 4 else "MISSED"])
    text = [f"ckstore benchmark — {machine['date']}, {machine['cpu_model_lscpu'] or machine['cpu_model_proc_cpuinfo']}, "
            f"{machine['nproc']} cores, {machine['mem_total_bytes'] / 2**30:.1f} GiB, "
            f"Linux {machine['kernel']}, commit {machine['git_commit'][:10]}"
            f"{' (+%d changed files)' % machine['git_dirty_files'] if machine['git_dirty_files'] else ''}",
            f"scale {a.scale} ({params['params_per_snapshot'] / 1e6:.1f}M params, "
            f"f32 file {params['f32_file_mb']:.1f} MB, bf16 file {params['bf16_file_mb']:.1f} MB), "
            f"median of {a.runs} run(s), load average {machine['loadavg_start'][0]:.2f} → "
            f"{machine['loadavg_end'][0]:.2f}", "",
            table(rows, ["group", "measurement", "median", "range", "note"]), "",
            table(checks, ["target", "measured", "goal", "status"])]
    report = "\n".join(text)
    print(report)
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"machine": machine, "params": params, "raw": raw,
                   "table": {"header": ["group", "measurement", "median", "range", "note"], "rows": rows},
                   "targets": checks, "report": report}, f, indent=1)
    log(f"raw results in {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
