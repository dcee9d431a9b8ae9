"""Fakes for unit tests of loop decisions (no servers): each stands behind one of the small
Protocols the real code talks through. Import them as ``fakes.<module>``: ``tests/`` is on
``sys.path`` through the rootdir conftest."""
