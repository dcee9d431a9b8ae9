"""dagkeeper: the Python SDK (workflow-as-code over the REST API) and the ``dagkeeper`` command.

The SDK itself grows in a later release; today this package carries the console entry point
(``dagkeeper.cli``), which starts the daemons: master, worker, api, standalone, migrate.
"""

__version__ = "0.1.0"
