"""The unit of work the planner produces and the executor runs.

A Step is plain data: the exact bash it runs, an optional cheap "already done" check
(pyinfra's facts-before-operations idea: a re-run of a finished recipe changes nothing),
and the few flags the executor needs (sudo, reboot, timeout, retries, uploads).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Upload:
    """A local file copied to the host over SFTP before the step runs.

    ``secret`` files are written with mode 0600 and their contents are masked in every
    log line and event (the executor learns the values to mask from them).

    ``env`` names a local environment variable whose value is the content instead of a
    file: the executor reads it when the run starts and sends it from memory, so the
    secret never touches the local disk. ``local`` is then only a label for the plan
    (``$NAME``).
    """

    local: str
    remote: str
    mode: int = 0o600
    secret: bool = True
    env: str | None = None


@dataclass(frozen=True)
class Step:
    """One ordered, idempotent piece of work on one host.

    ``run`` and ``check`` are bash snippets; the executor runs them under
    ``bash -euo pipefail``. ``check`` exiting 0 means "already done: skip". ``sudo``
    runs the snippet through ``sudo -n`` when the SSH user is not root. ``reboot``
    asks the executor to reboot the host after the step and wait for SSH to return.
    ``progress`` names a parser for progress lines (``"rclone"``) or is None.

    ``barrier``: every host whose list holds a step with this id reaches it before any
    host starts it (a host that stops earlier releases the others, whose step ends
    ``not_run`` naming it). ``gang`` implies barrier and, while the step runs, a
    failure on one host stops it on every other one; each host's result names the
    node that failed first. See :mod:`gpuwizard.executor.gang`.

    ``on`` says which nodes of a cluster run the step; ``node_env`` holds the node's
    ``GPUWIZARD_*`` variables (:mod:`gpuwizard.cluster.env`). They are sent like
    ``env`` but are not part of the resume fingerprint: a replaced node's new address
    must not make finished steps run again.
    """

    id: str
    title: str
    run: str
    check: str | None = None
    sudo: bool = False
    reboot: bool = False
    timeout: float = 3600.0
    retries: int = 0
    env: tuple[tuple[str, str], ...] = ()
    uploads: tuple[Upload, ...] = ()
    progress: str | None = None
    phase: str = "setup"
    barrier: bool = False
    gang: bool = False
    on: str = "all"                                   # cluster: all, head (rank 0) or workers
    node_env: tuple[tuple[str, str], ...] = ()        # cluster: the node's GPUWIZARD_* values
