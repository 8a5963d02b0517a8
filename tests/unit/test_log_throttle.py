"""One warning line per interval during an outage, with the number of occurrences it stood for."""

from __future__ import annotations

from app.lib import log as log_module
from app.lib.log import ThrottledWarning


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **fields) -> None:
        self.lines.append((event, fields))


def test_a_flood_of_warnings_becomes_one_line_per_interval(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(log_module.time, "monotonic", lambda: clock[0])
    recorder = _Recorder()
    warn = ThrottledWarning(recorder, "store_unavailable", interval=10.0)  # type: ignore[arg-type]
    logged = [warn(error="down") for _ in range(1000)]
    assert logged.count(True) == 1 and recorder.lines == [("store_unavailable", {"suppressed_since_last": 0, "error": "down"})]
    clock[0] += 9.9
    assert warn(error="down") is False
    clock[0] += 0.2
    assert warn(error="still down") is True
    assert recorder.lines[-1] == ("store_unavailable", {"suppressed_since_last": 1000, "error": "still down"})
