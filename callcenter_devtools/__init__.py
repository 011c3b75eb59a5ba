"""Development tools: the Asterisk sandbox, SIPp phones, seed data and the demo.

The engine never imports this package at run time; the CLI does, for ``callcenter asterisk``, ``callcenter db
seed`` and ``callcenter demo``, and so do the tests and benchmarks. The import contracts in ``.importlinter``
check both.
"""
