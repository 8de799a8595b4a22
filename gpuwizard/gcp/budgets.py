"""How long gpuwizard waits for Compute Engine, per purpose, decided once.

The client library's defaults (a 600 s retry on reads, a 600 s request timeout) made a
503 storm look like a hang (issue 13): every call here gets its own budget instead,
sized for what it is for. Environment overrides exist for tests, benches and slow
networks; the modules read these attributes at call time, so a test may patch them.
"""

from __future__ import annotations

import os


def _env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


#: One HTTP request (connect + read). The ``wait`` endpoint itself returns within ~2 min.
REQUEST_TIMEOUT = _env("GPUWIZARD_GCP_REQUEST_TIMEOUT", 60.0)
#: Retrying a read (instances.get, getGuestAttributes, lists) on 5xx/429/connection errors.
READ_BUDGET = _env("GPUWIZARD_GCP_READ_BUDGET", 60.0)
#: A read that only adds to what Compute Engine says (Cloud Quotas' QuotaInfos): retried
#: briefly, then gpuwizard falls back to regions.list and says so. An unreachable endpoint
#: must not hold a run (or the run screen) for the full READ_BUDGET.
EXTRA_READ_BUDGET = _env("GPUWIZARD_GCP_EXTRA_READ_BUDGET", 10.0)
EXTRA_REQUEST_TIMEOUT = _env("GPUWIZARD_GCP_EXTRA_REQUEST_TIMEOUT", 15.0)
#: An operation (insert, start, delete) from submission to DONE.
OP_TIMEOUT = _env("GPUWIZARD_GCP_OP_TIMEOUT", 600.0)
#: Back-off base between retries of a refused mutation (insert/start/delete): base * 2**i.
RETRY_BASE = _env("GPUWIZARD_GCP_RETRY_BASE", 2.0)
#: Retries of a mutation that failed with a transient error (5xx, rate limit).
TRANSIENT_RETRIES = 3
#: Waiting for a new VM to publish its SSH host keys.
HOSTKEY_TIMEOUT = _env("GPUWIZARD_HOSTKEY_TIMEOUT", 180.0)
HOSTKEY_POLL = _env("GPUWIZARD_HOSTKEY_POLL", 3.0)
#: instances.get while a VM changes state (resume).
STATE_POLL = _env("GPUWIZARD_GCP_STATE_POLL", 2.0)
#: A wait longer than this says what it waits for and for how long.
ANNOUNCE_AFTER = 5.0
#: ``run --wait``: the first gap between rounds of tries when every zone is out of capacity,
#: how much each gap grows, and its cap (gcp/wait.py; SkyPilot's --retry-until-up starts at 30 s).
WAIT_FIRST = _env("GPUWIZARD_WAIT_FIRST", 30.0)
WAIT_FACTOR = _env("GPUWIZARD_WAIT_FACTOR", 1.5)
WAIT_CAP = _env("GPUWIZARD_WAIT_CAP", 600.0)
