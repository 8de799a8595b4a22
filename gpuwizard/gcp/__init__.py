"""Everything gpuwizard asks of Google Cloud (Compute Engine), on google-cloud-compute (REST).

Deliberately import-free: ``google.cloud.compute_v1`` costs 1.4-2 s to import, and only
:mod:`.client` imports it (or anything from Google), inside the calls that need it.

* :mod:`.client`      the one adaptor to Google: credentials, project, budgeted Compute calls
* :mod:`.budgets`     how long each kind of call may take (retry and timeout budgets)
* :mod:`.errors`      GcpError, ApiError and the classification of Compute errors (pure)
* :mod:`.operations`  run an insert/start/delete operation to a verdict (retry and classify)
* :mod:`.quota`       GPU quota: global GPUS_ALL_REGIONS and per region
* :mod:`.zones`       zones offering a GPU, joined with free quota and price
* :mod:`.body`        a VM's names, labels and Instance body (pure)
* :mod:`.inventory`   the VMs of a recipe: list, describe, delete
* :mod:`.context`     the state of one provisioning run and its VM ledger
* :mod:`.resume`      the run's existing VMs: reuse, restart or replace
* :mod:`.failover`    quota and OS Login checks, inserts with zone failover
* :mod:`.wait`        ``run --wait``: rounds of zones out of capacity, with jittered backoff
* :mod:`.consumption` Spot, reservations and DWS flex-start: body fields and refused combinations
* :mod:`.hostkeys`    host keys from guest attributes or the serial console, pinned
* :mod:`.provision`   the whole: resume, create, pin (what ``runner`` calls)
* :mod:`.sshkeys`     gpuwizard's login key and known_hosts files
* :mod:`.commands`    the ``quota``, ``zones``, ``down`` and ``status`` subcommands
"""
