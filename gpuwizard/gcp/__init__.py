"""Everything gpuwizard asks of Google Cloud (Compute Engine), on google-cloud-compute (REST).

Deliberately import-free: ``google.cloud.compute_v1`` costs 1.4-2 s to import, so only
the modules that talk to the API import it, and only inside the functions that need it.

* :mod:`.client`     credentials, project and the Compute client factory (endpoint override)
* :mod:`.errors`     GcpError and the classification of Compute errors (pure)
* :mod:`.quota`      GPU quota: global GPUS_ALL_REGIONS and per region
* :mod:`.zones`      zones offering a GPU, joined with free quota and price
* :mod:`.provision`  instances.insert with zone failover, host keys, teardown, listing
* :mod:`.commands`   the ``quota``, ``zones``, ``down`` and ``status`` subcommands
"""
