"""Exchange order connector: query-orders commands in, normalized Avro order snapshots out."""

__version__ = "0.1.0"
