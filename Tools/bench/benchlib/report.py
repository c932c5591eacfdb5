"""Table rows, target checks and the Markdown table."""

from __future__ import annotations

HEADER = ["group", "measurement", "median", "range", "note"]
CHECK_HEADER = ["target", "measured", "goal", "status"]


class Summary:
    """Rows and target checks collected by the groups' summarize functions."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.checks: list[list[str]] = []

    def row(self, group: str, measurement: str, median: str, rng: str = "", note: str = "") -> None:
        """One table row."""
        self.rows.append([group, measurement, median, rng, note])

    def check(self, target: str, measured: str, goal: str, ok: bool | None) -> None:
        """One target: 'met', 'MISSED', or 'n/a' when it could not be measured (ok is None)."""
        self.checks.append([target, measured, goal, "n/a" if ok is None else "met" if ok else "MISSED"])

    def note(self, group: str, text: str) -> None:
        """A row that only carries a remark (a skipped value, a failed command)."""
        self.rows.append([group, text, "—", "", ""])


def table(rows: list[list[str]], header: list[str]) -> str:
    """Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def mib(kb) -> str:
    """'123 MB' from /usr/bin/time's kilobytes (MB = 10^6 bytes)."""
    return "?" if kb is None else f"{kb * 1024 / 1e6:.0f} MB"
