"""``connector sandbox``: local exchange simulators that speak the real protocols.

Each venue keeps its simulator next to its adapter (``connector/exchanges/<venue>/simulator.py``)
and declares it in its registry descriptor (:class:`~connector.exchanges.registry.Simulator`).
``connector sandbox`` starts one HTTP/WebSocket server per registered venue on loopback, writes an
accounts file with the demo credentials, and prints as its first line the environment
assignments that point a worker at it. Every simulator also serves a control API under
``/__sandbox/`` (fault injection, counters) that tests use.
"""
