"""Exchange order connector: query-orders commands in, normalized Avro order snapshots out.

The version lives in one place, :data:`connector.version.__version__` (``--version``, the ready
line, ``/status`` and ``connector_build_info`` all read it there).
"""
