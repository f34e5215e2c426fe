"""``segdl daemon``: a download manager with an aria2-compatible JSON-RPC and its own page.

Layers, each in its own module: :mod:`.model` (items and states), :mod:`.store` (the SQLite
queue, every change committed before it is acknowledged), :mod:`.confine` (``dir``/``out``
kept inside the download root), :mod:`.ariaopts` (aria2 option names to segdl's),
:mod:`.manager` (the queue and the scheduler; downloads run through :func:`segdl.download`
in threads), :mod:`.render` (aria2's answer structs), :mod:`.rpc` and :mod:`.methods`
(JSON-RPC 2.0 and aria2's methods), :mod:`.server` (aiohttp: HTTP, WebSocket, the page),
:mod:`.config` and :mod:`.serve` (configuration and lifetime). The command line is
:mod:`segdl.cli.daemon`. Needs the ``daemon`` extra (aiohttp).
"""
