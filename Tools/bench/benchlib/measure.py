"""Timing one command: wall time, peak RSS, CPU time, exit status; medians and ranges.

Wall time is measured around fork/exec/wait (perf_counter). Peak RSS and CPU time come from
`/usr/bin/time -f "%e %M %U %S"`: a child forked straight from this (large) Python process would
report the parent's RSS, since Linux carries the pre-exec high-water mark into ru_maxrss."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class CommandFailed(RuntimeError):
    """A timed command exited non-zero (or was killed); the message names it and its stderr."""


def drop_caches() -> bool:
    """Drop the page cache (root only); True when it worked."""
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def describe_exit(code: int) -> str:
    """'exit 3' or 'killed by SIGKILL (9)' for a subprocess return code (negative = signal)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal"
        return f"killed by {name} ({-code})"
    return f"exit {code}"


def timed(cmd, *, shell: bool = False, stdout=subprocess.DEVNULL, sync_first: bool = True,
          rss: bool = True, cold: bool = False, check: bool = True) -> dict:
    """Run cmd; return {"wall_s", "maxrss_kb", "cpu_s", "exit"}.

    sync(2) runs untimed first (sync_first), and with cold=True the page cache is dropped too.
    With check=True a non-zero exit raises CommandFailed; with check=False the sample carries
    "exit" (the return code, negative for a signal), "failure" (e.g. 'killed by SIGKILL (9)')
    and "stderr_tail", so a failing baseline (MemoryError, OOM kill) is recorded, not fatal."""
    if sync_first:
        os.sync()
    if cold:
        drop_caches()
    argv = ["/bin/bash", "-c", cmd] if shell else list(cmd)
    with tempfile.NamedTemporaryFile(prefix="ckbench-time-") as tf, tempfile.TemporaryFile() as err:
        if rss and TIME_BIN:
            argv = [TIME_BIN, "-f", "%e %M %U %S", "-o", tf.name] + argv
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=stdout, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip()
        maxrss = cpu = None
        if rss and TIME_BIN:
            text = open(tf.name).read()
            # /usr/bin/time writes "Command terminated by signal 9" / "Command exited with
            # non-zero status 1" before the figures when the child fails.
            for line in text.splitlines():
                if line.startswith("Command terminated by signal"):
                    code = -int(line.split()[-1])
            fields = text.split()[-4:]
            try:
                maxrss, cpu = int(fields[1]), float(fields[2]) + float(fields[3])
            except (IndexError, ValueError):
                pass
        elif rss:
            maxrss = ru.ru_maxrss  # upper bound (includes this process's pre-exec RSS)
    sample = {"wall_s": wall, "maxrss_kb": maxrss, "cpu_s": cpu, "exit": code}
    if code != 0:
        if check:
            raise CommandFailed(f"{cmd!r} {describe_exit(code)}: {stderr[-2000:]}")
        sample["failure"] = describe_exit(code)
        sample["stderr_tail"] = stderr[-2000:]
    return sample


def output(cmd) -> str:
    """stdout of cmd; CommandFailed naming the command, its exit status and stderr on failure."""
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise CommandFailed(f"{cmd!r} {describe_exit(p.returncode)}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def quiet(cmd) -> str:
    """stdout of cmd, or '' when it is missing or fails."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def med(xs) -> float:
    """Median, NaN for an empty list."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def span(xs, fmt: str = "{:.2f}") -> str:
    """'min–max' of several values, '' for fewer than two."""
    xs = [x for x in xs if x is not None]
    return f"{fmt.format(min(xs))}–{fmt.format(max(xs))}" if len(xs) > 1 else ""


def rotate(names: list, r: int) -> list:
    """names rotated by r, so that no command is always first or last in a round."""
    if not names:
        return names
    r %= len(names)
    return names[r:] + names[:r]


def uptime() -> str:
    """`uptime` output (load averages) for the JSON."""
    return quiet(["uptime"]) or " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def q(s: str) -> str:
    """Shell-quote s."""
    return "'" + s.replace("'", "'\\''") + "'"
