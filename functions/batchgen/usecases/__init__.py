"""Use cases: one module per stage of a batch's life, each a plain function over `ports.Services`.

Handlers parse events and call these; these decide with the domain and act through the ports.
"""
