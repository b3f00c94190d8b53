"""A warning repeated many times a second (a client retrying against a dead broker) is logged once
per window, and the next one says how many were dropped; info lines are never dropped."""

from __future__ import annotations

import io
import logging

import orjson

from streamforge_pipelines.workers.observability import QuietRepeats, configure_logging


def _record(level: int, msg: str, args: tuple, created: float, name: str = "aiokafka") -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.created = created
    return record


def test_a_repeated_warning_passes_once_per_window() -> None:
    quiet = QuietRepeats(window_s=10.0)
    template = "Unable connect to node with id %s: %s"
    passed = [
        quiet.filter(_record(logging.ERROR, template, (111, "refused"), 1000.0 + i * 0.1)) for i in range(100)
    ]
    assert passed.count(True) == 1 and passed[0]  # 100 in 9.9 s: the first only
    later = _record(logging.ERROR, template, (111, "refused"), 1010.5)
    assert quiet.filter(later)
    assert later.repeats_dropped == 99
    # another template, another logger, or an info line: not affected
    assert quiet.filter(_record(logging.ERROR, "Unable to update metadata from %s", ([111],), 1010.6))
    assert quiet.filter(_record(logging.ERROR, template, (111, "refused"), 1010.6, name="other"))
    assert all(quiet.filter(_record(logging.INFO, "task %s loading", (i,), 1010.7)) for i in range(50))


def test_the_worker_log_handler_drops_repeats() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiokafka").level)
    configure_logging("INFO", stream=out)
    try:
        log = logging.getLogger("aiokafka")
        for i in range(500):
            log.error("Unable connect to node with id %s: %s", 111, f"attempt {i}")
        logging.getLogger("streamforge.test").info("still speaking")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("aiokafka").setLevel(saved[2])
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == [
        "Unable connect to node with id 111: attempt 0",
        "still speaking",
    ]
