"""Cluster mode (issue 16): several nodes trained on as one with torch.distributed.

The modules, each with one job:

- :mod:`.nodes`     ``Node``: a host with its rank (rank 0, the head, is the first host)
- :mod:`.env`       the ``GPUWIZARD_*`` variables every step on every node gets
- :mod:`.plan`      one step list -> a list per node (``on:``, the variables)
- :mod:`.torchrun`  the ``gpuwizard torchrun`` step helper put on the nodes

Steps that nodes take together use the executor's ``Step.barrier`` / ``Step.gang``
(:mod:`gpuwizard.executor.gang`). Nothing here imports :mod:`gpuwizard.recipe` at run
time (the recipe's checks import :mod:`.torchrun`; the other way round would be a cycle).
"""
