"""Use cases: plain functions over `ports.Services`, grouped by feature (`pipeline`, `bulk`, `notify`,
`planning`, `routing`), one module per stage or concern.

Handlers parse events and call these; these decide with the domain, act through the ports and name the
events their changes cause. The feature packages import one way (tests/unit/test_layers.py).
"""
