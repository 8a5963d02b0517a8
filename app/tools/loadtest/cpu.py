"""CPU seconds of processes (the generator, a server and its workers), read from ps."""

from __future__ import annotations

from pathlib import Path


def processes() -> list[tuple[int, int, str, float]]:
    """(pid, parent pid, command name, user + system CPU seconds) of every process (Linux /proc; empty
    elsewhere)."""
    import os

    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = entry.read_text()
        except OSError:  # exited meanwhile
            continue
        # The command name may contain spaces and parentheses: split after the last ")".
        name_end = raw.rindex(")")
        fields = raw[name_end + 2 :].split()
        found.append(
            (
                int(entry.parent.name),
                int(fields[1]),
                raw[raw.index("(") + 1 : name_end],
                (int(fields[11]) + int(fields[12])) / tick,
            )
        )
    return found


def cpu_seconds_by_command(prefix: str) -> dict[int, float]:
    """CPU seconds of every process whose command name starts with `prefix`, by pid. For PostgreSQL on
    the same host: its backends are separate processes, not children of the app, so what the database
    spends per request is read this way."""
    return {pid: cpu for pid, _, name, cpu in processes() if name.startswith(prefix)}


def cpu_seconds_between(start: dict[int, float], end: dict[int, float]) -> float:
    """CPU spent between two `cpu_seconds_by_command` readings (a process born in between counts whole;
    one that exited in between is lost, which is why pools that keep connections open are measured)."""
    return sum(seconds - start.get(pid, 0.0) for pid, seconds in end.items())


def process_tree_cpu_seconds(root: int) -> float:
    """CPU seconds of process `root` and all its descendants."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for pid, parent, _, seconds in processes():
        children.setdefault(parent, []).append(pid)
        cpu[pid] = seconds
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total
