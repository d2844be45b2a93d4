"""tensorboardX's protocol buffers and record writer, importable without its ``SummaryWriter``.

Why: importing anything from tensorboardX (``from tensorboardX.proto.event_pb2 import
Event``) first runs the package's ``__init__``, which imports its ``SummaryWriter``, whose
module imports torch where torch is installed — about 1.4 s before a plugnet process does
anything, in every ``plugnet`` command and every sweep worker.  plugnet uses only the
generated protocol buffers (``tensorboardX.proto``) and the record writer
(``tensorboardX.record_writer``), which need neither torch nor the writer.

`import_without_writer` puts the package in ``sys.modules`` without running its
``__init__``, so those submodules import on their own.  The package's real ``__init__`` runs
the first time anything else is asked of it, so a script that uses ``tensorboardX.
SummaryWriter`` beside plugnet gets the whole package as usual.  ``framework/__init__.py``
calls it first, before any module of plugnet (or of a plugin) imports from tensorboardX.
"""

import importlib.util
import sys

PACKAGE = "tensorboardX"


def import_without_writer():
    """Make ``tensorboardX``'s submodules importable without its ``__init__`` (a no-op when
    the package is already imported, or not installed: its import then fails as usual)."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)  # __path__ set, __init__ not run

    def __getattr__(name):
        # The first use of something the submodules do not provide (SummaryWriter,
        # __version__...): run the real __init__ in this same module object, once.
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = __getattr__  # PEP 562: consulted only for names not yet set
    sys.modules[PACKAGE] = package


import_without_writer()
