"""Local exchange simulators that speak the real protocols, for the demo and the tests.

``connector sandbox`` starts one HTTP/WebSocket server per exchange on loopback, writes an
accounts file with the demo credentials, and prints as its first line the environment
assignments that point a worker at it. Each simulator lives in its own module and exposes:

* ``create_app(state) -> aiohttp.web.Application`` — the server, including a control API under
  ``/__sandbox/`` (fault injection, counters) that tests use;
* ``demo_accounts() -> dict[str, dict[str, str]]`` — alias -> accounts-file entry.
"""
