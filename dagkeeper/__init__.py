"""dagkeeper: the Python SDK for users (workflow-as-code over the REST API).

It imports no server package: everything it does goes through the REST API. The ``dagkeeper``
console script itself lives in ``ops.cli`` (daemon sub-commands) and hands client commands here.
"""

__version__ = "0.1.0"
