"""Test helper loaded as a plugin: from its import on, notes every attempt to import torch
(found or not), and registers the ``torch_probe`` callback, which writes at the end of
training ``LOGDIR/torch_probe.json``: those attempts and whether torch is imported."""

import json
import os
import sys

from framework import Callback, hookimpl

attempts = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            attempts.append(name)
        return None  # the other finders go on as usual


sys.meta_path.insert(0, Watch())


class TorchProbe(Callback):
    @hookimpl
    def on_train_end(self, trainer):
        with open(os.path.join(trainer.logdir, "torch_probe.json"), "w") as f:
            json.dump(
                {"attempts": attempts, "imported": "torch" in sys.modules, "pid": os.getpid()}, f
            )


@hookimpl
def register_callbacks():
    return {"torch_probe": TorchProbe}
