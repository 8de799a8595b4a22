"""The shell that signals a remote step's process group works in every sh, dash included.

dash (Debian's and Ubuntu's /bin/sh, and the login shell of some users) rejects
``kill -KILL -- -PGID``; a fallback to the group leader alone would leave the step's
children running beside the next attempt. Run for real against a local process group.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from gpuwizard.executor.remote import signal_cmd
from tests.builders.procs import group_members as _alive


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_whole_group_is_signalled(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    # a leader that ignores TERM with a child that ignores it too, like `trap '' TERM; cmd; ...`
    leader = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60; echo never"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(_alive(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_alive(leader.pid)) == 2
        subprocess.run([shell, "-c", signal_cmd("TERM", leader.pid)], check=True)
        time.sleep(0.2)
        assert len(_alive(leader.pid)) == 2  # TERM is ignored by both
        subprocess.run([shell, "-c", signal_cmd("KILL", leader.pid)], check=True)
        deadline = time.monotonic() + 5
        while _alive(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(leader.pid) == []  # the child too, not only the leader
    finally:
        leader.kill()
        leader.wait()
