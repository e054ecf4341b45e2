"""Exchange order connector: query-orders commands in, normalized Avro order snapshots out.

The version lives in one place, ``pyproject.toml``; read it with
``importlib.metadata.version("exchange-order-connector")``.
"""
