"""Where the built-in callbacks' messages go."""

import sys

from tqdm import tqdm


def report(message):
    """Print a one-line message on stderr.  `tqdm.write` lifts any progress bar drawn there
    out of the way and redraws it below, so the message never lands inside a bar."""
    tqdm.write(message, file=sys.stderr)
