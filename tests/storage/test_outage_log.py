"""The writers' line for batches failed with the database out of reach: once, then at most
every so often with a count, and once more when writes commit again."""

from __future__ import annotations

import logging
import time

import pytest

from clickback.storage.writer import OutageLog


def test_an_outage_is_said_once_counted_and_its_end_said(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("clickback.test_outage")
    outage = OutageLog(log, every=0.05)
    caplog.set_level(logging.WARNING, logger=log.name)
    for _ in range(5):
        outage.batch_failed(3, ConnectionRefusedError("refused"))
    assert outage.failing(10.0) is not None
    outage.recovered()
    assert outage.failing(10.0) is None
    time.sleep(0.06)
    outage.batch_failed(1, ConnectionRefusedError("refused"))
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "write batch of 3 failed, the database out of reach: ConnectionRefusedError: refused",
        "writes commit again (4 batches failed since the last line said so)",
        "write batch of 1 failed, the database out of reach: ConnectionRefusedError: refused",
    ], said
    outage.recovered()
    outage.recovered()  # said once
    assert len(caplog.records) == 4
