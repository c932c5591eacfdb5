"""The machine description and the ckstore binary the benchmark runs."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import sys

from .measure import quiet, uptime

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # Tools/bench
REPO = os.path.dirname(os.path.dirname(HERE))


def find_ckstore(arg: str | None) -> str:
    """--ckstore, $CKSTORE_BIN, .build/release/ckstore or PATH, first that is executable."""
    for cand in (arg, os.environ.get("CKSTORE_BIN"),
                 os.path.join(REPO, ".build", "release", "ckstore"), shutil.which("ckstore")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    sys.exit("run.py: no ckstore binary: pass --ckstore BIN, set CKSTORE_BIN, or "
             "`swift build -c release` first")


def _first(path: str, prefix: str) -> str:
    try:
        for line in open(path):
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def binary_commit(ckstore: str) -> dict:
    """The git commit of the checkout the binary was built in (the binary's .build/<cfg>/ is
    inside a checkout): its HEAD, the last commit touching the sources, the number of changed
    tracked files; and the HEAD of this harness's checkout."""
    d = os.path.dirname(os.path.realpath(ckstore))
    top = quiet(["git", "-C", d, "rev-parse", "--show-toplevel"])
    sources = ["git", "-C", top, "log", "-1", "--format=%H", "--", "Sources", "Package.swift", "Package.resolved"]
    return {
        "ckstore_checkout": top,
        # The last commit that changed what the binary is built from (the checkout's HEAD may
        # only have changed docs or tools since; ckstore_binary_mtime says when it was built).
        "ckstore_sources_commit": quiet(sources) if top else "",
        "ckstore_git_commit": quiet(["git", "-C", d, "rev-parse", "HEAD"]) if top else "",
        "ckstore_git_dirty_files": len(quiet(["git", "-C", d, "status", "--porcelain",
                                               "--untracked-files=no"]).splitlines()) if top else 0,
        "harness_git_commit": quiet(["git", "-C", REPO, "rev-parse", "HEAD"]),
    }


def machine_info(ckstore: str, work: str) -> dict:
    """Everything a reader needs to place the numbers: CPU, memory, kernel, disk, versions."""
    import numpy as np
    import safetensors
    lscpu_model = ""
    for line in quiet(["lscpu"]).splitlines():
        if line.lower().startswith("model name"):
            lscpu_model = line.split(":", 1)[1].strip()
    mem = _first("/proc/meminfo", "MemTotal")
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": quiet(["nproc"]),
        "cpu_count": os.cpu_count(),
        "cpu_model": lscpu_model or _first("/proc/cpuinfo", "model name"),
        "mem_total_bytes": int(mem.split()[0]) * 1024 if mem else 0,
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "uptime_start": uptime(),
        "loadavg_start": os.getloadavg(),
        "work_folder": work,
        "work_filesystem": " ".join(quiet(["findmnt", "-no", "FSTYPE,SOURCE", "-T", work]).split()),
        "work_free_bytes": shutil.disk_usage(work).free,
        "ckstore_binary": ckstore,
        "ckstore_version": quiet([ckstore, "--version"]),
        "ckstore_binary_mtime": datetime.datetime.fromtimestamp(
            os.path.getmtime(ckstore), datetime.timezone.utc).isoformat(timespec="seconds"),
        "coreutils_version": quiet(["cp", "--version"]).split("\n")[0],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
    info.update(binary_commit(ckstore))
    return info


def headline(m: dict) -> str:
    """One line naming the machine and the binary, for the top of the table."""
    dirty = m.get("ckstore_git_dirty_files")
    return (f"{m['date']}, {m['cpu_model']}, {m['nproc']} cores, "
            f"{m['mem_total_bytes'] / 2**30:.1f} GiB, Linux {m['kernel']}, {m['work_filesystem']}; "
            f"ckstore sources at commit {(m.get('ckstore_sources_commit') or '?')[:10]} "
            f"(checkout HEAD {(m.get('ckstore_git_commit') or '?')[:10]}"
            f"{f', +{dirty} changed files' if dirty else ''}), binary built {m['ckstore_binary_mtime']}")
