"""The typed request for a run: what the user asked ``gpuwizard run`` to do.

Its own module, with no imports, so the CLI can build one without loading the runner
(``gpuwizard --help`` stays fast); :mod:`gpuwizard.runner` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunRequest:
    """What the user asked ``gpuwizard run`` (or the run screen) to do, typed.

    The CLI builds it from its flags (:func:`gpuwizard.cli.run_request`); the run screen
    builds one directly. The core reads these fields and never an ``argparse.Namespace``.
    Field names match the ``run`` subcommand's flag names.
    """

    recipe: str                        #: path of the recipe file, as given
    resume: bool = False               #: ``--resume``: continue the newest unfinished or failed run
    fresh: bool = False                #: ``--fresh``: never resume, start a new run
    only: tuple[str, ...] = ()         #: ``--only``: run just these step ids (empty: all)
    json: bool = False                 #: ``--json``: one JSON event per line
    headless: bool = False             #: ``--headless``: plain lines even on a terminal
    run_dir: str | None = None         #: ``--run-dir``: write (or resume) the run directory here
    delete_on_failure: bool = False    #: ``--delete-on-failure``: delete this run's VMs if it fails
    accept_new_host_key: bool = False  #: ``--accept-new-host-key``: trust a VM's key on first connect
    wait: bool | None = None           #: ``--wait`` / ``--no-wait``: keep trying zones out of capacity (None: the recipe's)
    max_wait: str | None = None        #: ``--max-wait``: how long to wait for capacity, as given (``6h``); implies --wait
