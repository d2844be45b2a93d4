"""The exceptions plugnet raises for problems a user can fix.

Everything the CLI reports as "one clear message, exit status 2" is a `PlugnetError`;
anything else escaping the framework is a bug.
"""

import difflib


class PlugnetError(Exception):
    """A problem with the user's input: a config, a plugin, data or a file."""


class ConfigError(PlugnetError, ValueError):
    """A config, component name or parameter is wrong."""


class DataError(PlugnetError, ValueError):
    """Data is malformed: missing files, NaN, mismatched lengths, labels out of range."""


class ShapeError(PlugnetError, ValueError):
    """Arrays do not fit the model: names the layer and both shapes."""


class PluginError(PlugnetError):
    """A plugin could not be loaded, clashes with another, or its hook raised."""


def did_you_mean(name, known, *, cutoff=0.6, prefix=""):
    """What follows "unknown thing 'name'" in a message: ``"; did you mean 'x'?"`` naming
    the closest of ``known`` (with ``prefix``), or a full stop when none is close."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return f"; did you mean '{prefix}{close[0]}'?" if close else "."
