"""versions() and log_run_info(): what a run's log and metrics files say it ran with."""

from __future__ import annotations

import json
import logging
import platform
from importlib import metadata

from monai_osteo.bundle import log_run_info, versions


def test_versions_are_the_installed_distributions():
    v = versions(("numpy", "no-such-distribution-xyz"))
    assert v == {"python": platform.python_version(), "numpy": metadata.version("numpy"),
                 "no-such-distribution-xyz": None}


def test_log_run_info_logs_the_seed_versions_and_output(caplog):
    with caplog.at_level(logging.INFO, logger="monai_osteo.bundle"):
        info = log_run_info(3, "runs/x")
    assert info == {"seed": 3, **versions()}
    msg = caplog.records[-1].getMessage()
    assert msg.startswith("hand_osteo: seed and versions ") and msg.endswith("; outputs in runs/x")
    assert json.loads(msg[len("hand_osteo: seed and versions "):msg.index("; outputs")]) == info
