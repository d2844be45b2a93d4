"""Test helper loaded with ``--plugin sweep_barrier``: holds each process that imports it
until ``PLUGNET_BARRIER_COUNT`` processes have arrived in the directory
``PLUGNET_BARRIER_DIR``, so sweeps started one after another begin together, as processes
on several machines may.  It registers nothing.

What each process imports later (scikit-learn for the data: half a second) is imported
before arriving, so the processes also start their first trials together."""

import os
import time

import sklearn.datasets  # noqa: F401

directory = os.environ["PLUGNET_BARRIER_DIR"]
count = int(os.environ["PLUGNET_BARRIER_COUNT"])
open(os.path.join(directory, str(os.getpid())), "w").close()
deadline = time.monotonic() + 120
while len(os.listdir(directory)) < count and time.monotonic() < deadline:
    time.sleep(0.005)
