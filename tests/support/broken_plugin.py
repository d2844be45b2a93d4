"""A plugin whose registration hook raises."""

from framework import hookimpl


@hookimpl
def register_losses():
    raise RuntimeError("disk on fire")
