"""How numbers and logs are written for people: in the CLI's final lines and by callbacks."""

import math


def format_value(value):
    """Four decimals for ordinary magnitudes; scientific notation where those would hide the
    value (a loss of 3e-7 is not 0.0000, and 1e12 needs no twelve digits)."""
    value = float(value)
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}"
    return f"{value:.4e}"


def format_logs(logs):
    """``loss 0.1234  accuracy 0.9500  val_loss ...`` in the logs' own order."""
    return "  ".join(f"{key} {format_value(value)}" for key, value in logs.items())


def report(message):
    """Print a one-line message on stderr.  `tqdm.write` lifts any progress bar drawn there
    out of the way and redraws it below, so the message never lands inside a bar; callbacks
    of every plugin use it for what they tell the user (an early stop, a NaN)."""
    import sys

    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
