"""attrs validators for component parameters, with the messages plugnet's users see.

A validator raises ``ValueError``; the registry turns it into a `ConfigError` naming the
component (``dataset 'moons': n_samples must be a positive integer, got 0``).  Booleans are
not numbers here, although Python lets ``True`` pass for 1.
"""

import numpy as np


def is_number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def is_integer(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def whole_number(minimum):
    """An integer of at least ``minimum``."""
    wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def check(instance, attribute, value):
        if not is_integer(value) or value < minimum:
            raise ValueError(f"{attribute.name} must be {wanted}, got {value!r}")

    return check


positive_int = whole_number(1)


def non_negative(instance, attribute, value):
    """A number >= 0."""
    if not is_number(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def fraction(instance, attribute, value):
    """A number in [0, 1)."""
    if not is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be a number in [0, 1), got {value!r}")


def boolean(instance, attribute, value):
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be true or false, got {value!r}")
