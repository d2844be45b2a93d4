"""A `stall` callback that, once training ends, writes a marker file and then sleeps, so a
test can send a second signal while a stopped run is still finishing."""

import time

from framework import Callback, hookimpl


class Stall(Callback):
    def __init__(self, marker, seconds=60.0):
        self.marker = marker
        self.seconds = float(seconds)

    @hookimpl(tryfirst=True)
    def on_train_end(self):
        open(self.marker, "w").close()
        time.sleep(self.seconds)


@hookimpl
def register_callbacks():
    return {"stall": Stall}
