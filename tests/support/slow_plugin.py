"""A `slow` callback that sleeps after each step, so a test can kill training part-way."""

import time

from framework import Callback, hookimpl


class Slow(Callback):
    def __init__(self, seconds=0.01):
        self.seconds = float(seconds)

    @hookimpl
    def on_batch_end(self):
        time.sleep(self.seconds)


@hookimpl
def register_callbacks():
    return {"slow": Slow}
