"""plugnet's processes never import torch.

Where PyTorch is installed, ``import tensorboardX`` imports it (tensorboardX's writer module
tries to): about 1.4 s before a process does anything.  plugnet uses only tensorboardX's
protocol buffers and record writer (`framework.tensorboardx_protos`), so neither
``plugnet plugins``, nor a whole ``plugnet train`` with every TensorBoard summary, nor the
workers of a sweep import torch, or even try to (so these tests mean the same where torch
is absent).  How long each takes with and without torch: ``benchmarks/startup.py``."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SUPPORT = os.path.join(HERE, "support")

# Runs the command line in a process that notes every attempt to import torch from its
# first line on, and prints them with whether torch was imported in the end.
WATCHED = """
import json, sys
attempts = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            attempts.append(name)
        return None
sys.meta_path.insert(0, Watch())
from framework.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "attempts": attempts, "imported": "torch" in sys.modules}))
"""

CONFIG = """
seed = 0
plugins = ["torch_probe"]
[data]
type = "moons"
n_samples = 200
test_fraction = 0.25
[model]
layers = [{ type = "dense", units = 4, activation = "tanh" }, { type = "dense", units = 2, activation = "softmax" }]
[train]
loss = "cross_entropy"
optimizer = "adam"
epochs = 3
batch_size = 50
metrics = ["accuracy"]
callbacks = [
  { type = "tensorboard", scalar_every = 1, histogram_every = 1, image_every = 1 },
  { type = "checkpoint", every = 2 },
  "csv_logger",
  "torch_probe",
]
[logging]
logdir = "runs/probe"
"""


def watched(*args, cwd):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([SUPPORT, *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    result = subprocess.run(
        [sys.executable, "-c", WATCHED, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_listing_the_plugins_never_imports_torch(tmp_path):
    report = watched("plugins", cwd=tmp_path)
    assert report == {"code": 0, "attempts": [], "imported": False}


def test_training_with_every_summary_never_imports_torch(tmp_path):
    (tmp_path / "probe.toml").write_text(CONFIG)
    report = watched("train", "probe.toml", "--quiet", cwd=tmp_path)
    assert report == {"code": 0, "attempts": [], "imported": False}
    run = tmp_path / "runs" / "probe"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run / "train"))
    assert json.loads((run / "torch_probe.json").read_text())["attempts"] == []


def test_sweep_workers_never_import_torch(tmp_path):
    (tmp_path / "probe.toml").write_text(CONFIG)
    args = ["sweep", "probe.toml", "--grid", "model.layers.0.units=2,3", "--jobs", "2", "--quiet"]
    report = watched(*args, cwd=tmp_path)
    assert report == {"code": 0, "attempts": [], "imported": False}  # the sweep process
    probes = [
        json.loads(
            (tmp_path / "runs" / "probe" / f"trial-{n:04d}" / "torch_probe.json").read_text()
        )
        for n in (0, 1)
    ]
    assert len({p["pid"] for p in probes} | {os.getpid()}) == 3  # two workers ran them
    assert all(p["attempts"] == [] and not p["imported"] for p in probes)


def test_tensorboardX_imported_after_plugnet_is_whole():
    """A script using tensorboardX's own writer beside plugnet gets the whole package."""
    code = (
        "import framework, sys, tensorboardX; "
        "from tensorboardX import SummaryWriter; "
        "import tensorboardX.proto.event_pb2 as events; "
        "assert tensorboardX.proto.event_pb2 is events is sys.modules['tensorboardX.proto.event_pb2']; "
        "assert SummaryWriter.__module__ == 'tensorboardX.writer' and tensorboardX.__version__"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
