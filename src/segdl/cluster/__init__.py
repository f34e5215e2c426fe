"""Batches on a Ray cluster, with the per-host cap and pauses held cluster-wide.

One book (:mod:`segdl.cluster.leases`, held by a Ray actor) owns every host's connection
slots and pauses for a run; each worker's batch consults it through a
:class:`segdl.cluster.gate.LeasedGate`. Needs ``pip install 'segdl[cluster]'`` (Ray) and a
destination every worker sees.
"""
