"""The exceptions plugnet raises for problems a user can fix.

Everything the CLI reports as "one clear message, exit status 2" is a `PlugnetError`;
anything else escaping the framework is a bug.
"""


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
