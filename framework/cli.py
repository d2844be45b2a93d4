"""The ``plugnet`` command line."""

import argparse
import gc
import glob
import os
import shlex
import sys

from framework.config import add_plugins, apply_overrides, default_config, load_config
from framework.errors import ConfigError, PlugnetError
from framework.formatting import format_logs
from framework.stopping import Interrupted


def build_parser():
    parser = argparse.ArgumentParser(
        prog="plugnet", description="Train numpy neural networks built from plugins."
    )
    from framework import __version__

    parser.add_argument("--version", action="version", version=f"plugnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub):
        sub.add_argument("--logdir", help="where logs, summaries and checkpoints go")
        sub.add_argument("--seed", type=int, help="seed for weights, data and shuffling")
        sub.add_argument("--epochs", type=int, help="number of epochs (train.epochs)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. train.optimizer.lr=0.05 (repeatable)",
        )
        sub.add_argument(
            "--plugin",
            dest="plugins",
            action="append",
            default=[],
            metavar="MODULE",
            help="import MODULE as a plugin (repeatable)",
        )

    train = commands.add_parser("train", help="train a model from a TOML config")
    train.add_argument(
        "config", nargs="?", help="TOML config (default: the built-in moons example)"
    )
    train.add_argument(
        "--resume", metavar="LOGDIR", help="continue from the newest checkpoint in LOGDIR"
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run LOGDIR holds, if any, with a new one",
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    common(train)

    sweep = commands.add_parser("sweep", help="train one config many times over a parameter space")
    sweep.add_argument(
        "config", nargs="?", help="TOML config with a [sweep] table (default: the built-in example)"
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="values to try for KEY, typed as --set types them (repeatable; adds to [sweep.params])",
    )
    sweep.add_argument(
        "--trials", type=int, help="number of trials for the random and tpe samplers"
    )
    sweep.add_argument("--jobs", type=int, help="worker processes on this machine (default 1)")
    sweep.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna database URL or journal file (default LOGDIR/study.journal)",
    )
    sweep.add_argument(
        "--study", metavar="NAME", help="the study's name in the storage (default: LOGDIR's name)"
    )
    sweep.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the workers on a Ray cluster (auto, HOST:PORT or local)",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    common(sweep)

    def plugin_option(sub):
        sub.add_argument(
            "--plugin",
            dest="plugins",
            action="append",
            default=[],
            metavar="MODULE",
            help="import MODULE as a plugin, trusting it (repeatable; a plugin the run's config names is imported only so)",
        )

    def data_overrides(sub, what):
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"override a key of the run's config for the {what}, e.g. data.n_samples=500 (repeatable)",
        )

    evaluate = commands.add_parser("evaluate", help="a trained run's metrics on its held-out data")
    evaluate.add_argument(
        "run", metavar="RUN", help="a run directory (the logdir of plugnet train)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    data_overrides(evaluate, "data to evaluate on")
    plugin_option(evaluate)

    predict = commands.add_parser(
        "predict", help="a trained model's predictions for inputs in a file"
    )
    predict.add_argument("run", metavar="RUN", help="a run directory or a model file (model.save)")
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a .npy, .npz or .csv file of samples, or image files (or directories of them) for an image model",
    )
    predict.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="where to write the predictions (.npy or .csv)",
    )
    predict.add_argument(
        "--classes",
        action="store_true",
        help="write each sample's arg-max class instead of the outputs",
    )
    predict.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="samples per forward pass (default 256)",
    )
    plugin_option(predict)

    export = commands.add_parser("export", help="write a trained model as an ONNX file")
    export.add_argument("run", metavar="RUN", help="a run directory or a model file (model.save)")
    export.add_argument(
        "-o", "--output", required=True, metavar="FILE.onnx", help="the ONNX file to write"
    )
    export.add_argument(
        "--check",
        action="store_true",
        help="run the file in ONNX Runtime on the run's held-out data and print the largest difference from predict",
    )
    export.add_argument(
        "--opset", type=int, default=None, metavar="N", help="ONNX opset (default 17)"
    )
    data_overrides(export, "data --check runs on")
    plugin_option(export)

    sample = commands.add_parser("sample", help="text from a trained language model")
    sample.add_argument("run", metavar="RUN", help="a run directory, or a model file")
    sample.add_argument("--prompt", help="the text to continue (a lines model: how items begin)")
    sample.add_argument(
        "--tokens", type=int, help="ids to draw per sample (default 500; lines: the model's length)"
    )
    sample.add_argument("--temperature", type=float, default=1.0, help="below 1: surer (default 1)")
    sample.add_argument("--top-k", type=int, help="draw from the K likeliest ids only")
    sample.add_argument("--num-samples", type=int, default=1, help="how many samples (default 1)")
    sample.add_argument("--seed", type=int, help="the same seed gives the same text")
    plugin_option(sample)

    tokenize = commands.add_parser(
        "tokenize", help="write a text as token files (train.bin, val.bin) for the tokens dataset"
    )
    tokenize.add_argument("text", metavar="TEXT", help="a text file (UTF-8 unless --bytes)")
    tokenize.add_argument(
        "directory", metavar="DIR", help="where train.bin, val.bin and meta.json go"
    )
    tokenize.add_argument(
        "--val-fraction", type=float, default=0.1, help="the end of the text held out (default 0.1)"
    )
    tokenize.add_argument("--bytes", action="store_true", help="ids are the text's bytes (256)")

    plugins = commands.add_parser("plugins", help="list plugins and what they register")
    plugins.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="also load MODULE (repeatable)",
    )

    new_plugin = commands.add_parser(
        "new-plugin", help="write a ready plugin distribution to start from"
    )
    new_plugin.add_argument(
        "name", metavar="NAME", help="the plugin's Python package name, e.g. my_layers"
    )
    new_plugin.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help="where to write it (default: ./plugnet-NAME); new or empty",
    )
    return parser


def config_from_args(args):
    resume = getattr(args, "resume", None)
    if args.config:
        config = load_config(args.config)
    elif resume:
        from framework.rundir import RunDir

        config = RunDir(resume).config(resume=True)
    else:
        config = default_config()
    if (
        resume
        and args.logdir is not None
        and os.path.abspath(args.logdir) != os.path.abspath(resume)
    ):
        raise ConfigError(f"--resume continues the run in {resume}; drop --logdir {args.logdir}")
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.logdir is not None:
        overrides.append(f"logging.logdir={toml_string(args.logdir)}")
    return add_plugins(apply_overrides(config, overrides), args.plugins)


def toml_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_train(args):
    from framework.run import build

    if args.resume and args.overwrite:
        raise ConfigError(
            f"--resume continues the run in {args.resume} and --overwrite would replace it: give one of them"
        )
    config = config_from_args(args)
    experiment = build(
        config, progress=not args.quiet, resume=args.resume, overwrite=args.overwrite
    )
    if experiment.trainer.resumed_from_step is not None:
        trainer = experiment.trainer
        print(f"resuming {args.resume} from step {trainer.step} (epoch {trainer.epoch})")
    summary = experiment.fit()
    logdir = experiment.logdir
    print(
        f"trained {summary['epochs']} epochs, {summary['steps']} steps in {summary['seconds']:.1f} s"
    )
    print(f"train  {format_logs(summary['train'])}")
    if "test" in summary:
        print(f"test   {format_logs(summary['test'])}")
    # Only a run that wrote event files (the `tensorboard` callback) has anything to watch.
    if glob.glob(os.path.join(glob.escape(logdir), "**", "events.out.tfevents.*"), recursive=True):
        print(f"logs in {logdir}  (summary.json, TensorBoard event files); watch the runs with:")
        print(f"  tensorboard --logdir {shlex.quote(os.path.dirname(logdir) or logdir)}")
    else:
        print(
            f"logs in {logdir}  (summary.json; no TensorBoard event files: "
            "add the tensorboard callback to [train] callbacks to watch a run)"
        )
    return 0


def command_plugins(args):
    from framework.registry import load_plugins, plugin_manager, plugin_origin, registry

    load_plugins(args.plugins)
    pm = plugin_manager()
    by_plugin = registry().by_plugin()
    for name, plugin in pm.list_name_plugin():
        print(f"{name}  ({plugin_origin(plugin)})")
        for kind, names in by_plugin.get(name, {}).items():
            print(f"  {kind + ':':<14}{', '.join(names)}")
    return 0


def command_sweep(args):
    if args.jobs is not None and args.jobs > 1 and args.ray is None:
        # First thing: the worker server's imports then run beside this process's own.
        from framework.sweeps.server import worker_context

        worker_context()
    from framework.sweeps import SweepStopped, summary_lines, sweep

    try:
        result = sweep(
            config_from_args(args),
            grid=args.grid,
            trials=args.trials,
            jobs=args.jobs,
            storage=args.storage,
            study=args.study,
            ray=args.ray,
            progress=not args.quiet,
        )
    except SweepStopped as exc:  # SIGINT or SIGTERM: the running trials stopped at a step
        print(f"plugnet: {exc}", file=sys.stderr)
        return exc.exit_status
    print("\n".join(summary_lines(result)))
    if result.interrupted_workers or (
        result.best is None and any(t.state == "fail" for t in result.trials)
    ):
        return 1
    return 0


def command_evaluate(args):
    import json

    from framework.inference import evaluate_run

    logs, samples = evaluate_run(args.run, args.overrides, args.plugins)
    if args.json:
        print(json.dumps(logs))
    else:
        print(f"{args.run} on {samples} held-out samples")
        print(f"test   {format_logs(logs)}")
    return 0


def command_sample(args):
    from framework.inference import load_model
    from framework.text import sample_text

    model = load_model(args.run, plugins=args.plugins)

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    sample_text(
        model,
        prompt=args.prompt,
        tokens=args.tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        num_samples=args.num_samples,
        rng=args.seed,
        write=write,
    )
    return 0


def command_tokenize(args):
    import os

    from framework.text import write_token_files

    counts = write_token_files(
        args.text, args.directory, args.val_fraction, "bytes" if args.bytes else "chars"
    )
    print(
        f"{counts['train']:,} training ids and {counts['val']:,} held-out ids "
        f"(vocab_size {counts['vocab_size']}) in {os.path.join(args.directory, 'train.bin')} "
        "and val.bin, the tokenizer in meta.json"
    )
    return 0


def command_predict(args):
    from framework.inference import (
        DEFAULT_BATCH_SIZE,
        check_output_path,
        load_model,
        predict_to_file,
        read_inputs,
    )

    check_output_path(args.output)  # before the model and the inputs are read
    model = load_model(args.run, plugins=args.plugins)
    x = read_inputs(args.inputs, model)
    source = args.inputs[0] if len(args.inputs) == 1 else "the input images"
    batch_size = DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    n = predict_to_file(
        model, x, args.output, classes=args.classes, batch_size=batch_size, source=source
    )
    print(f"wrote {'classes' if args.classes else 'predictions'} of {n} samples to {args.output}")
    return 0


def command_export(args):
    from framework.inference import load_model
    from framework.onnx_export import OPSET, export_onnx

    opset = OPSET if args.opset is None else args.opset
    model = load_model(args.run, plugins=args.plugins)
    path = export_onnx(model, args.output, opset=opset)
    print(f"wrote {path} (ONNX opset {opset}, {model.num_params:,} parameters)")
    return check_export(args, model, path) if args.check else 0


# The most held-out samples `export --check` runs: a text dataset holds out every window of
# its last tenth (110,000 for Tiny Shakespeare), a quarter of an hour through both runtimes.
CHECK_SAMPLES = 4096


def check_export(args, model, path):
    import numpy as np

    from framework.inference import held_out
    from framework.onnx_export import CHECK_TOLERANCE, largest_difference
    from framework.rundir import RunDir

    if not os.path.isdir(args.run):
        raise ConfigError(
            "--check runs the model on its run's held-out data: give a run directory, not a model file"
        )
    config = RunDir(args.run).config_for_use(args.plugins, args.overrides)
    x, _ = held_out(config, "check")
    if len(x) > CHECK_SAMPLES:  # a text's every window: a spread of them checks as well
        x = x[np.linspace(0, len(x) - 1, CHECK_SAMPLES).astype(np.intp)]
    difference, scale = largest_difference(model, path, x)
    print(
        f"ONNX Runtime on {len(x)} held-out samples: largest difference from predict {difference:.3g}"
    )
    if difference > CHECK_TOLERANCE * scale:
        print(
            f"plugnet: the difference is above {CHECK_TOLERANCE:g}: the export does not match predict",
            file=sys.stderr,
        )
        return 1
    return 0


def command_new_plugin(args):
    from framework.scaffold import new_plugin

    directory = new_plugin(args.name, args.directory)
    where = shlex.quote(str(directory))
    print(
        f"wrote the plugin '{args.name}' to {directory}/: pyproject.toml, README.md, {args.name}/__init__.py, tests/"
    )
    steps = [
        (f"pip install -e {where}", "registers it through its 'plugnet' entry point"),
        (f"pytest {where}", "plugnet's checks of its layer and activation"),
        ("plugnet plugins", "lists it"),
    ]
    width = max(len(command) for command, _ in steps)
    print("next:")
    for command, why in steps:
        print(f"  {command:<{width}}   # {why}")
    return 0


COMMANDS = {
    "train": command_train,
    "plugins": command_plugins,
    "sweep": command_sweep,
    "evaluate": command_evaluate,
    "predict": command_predict,
    "export": command_export,
    "sample": command_sample,
    "tokenize": command_tokenize,
    "new-plugin": command_new_plugin,
}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except PlugnetError as exc:
        print(f"plugnet: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable log directory, a full disk: the user can fix these
        where = f": {exc.filename}" if exc.filename else ""
        print(f"plugnet: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "plugnet: error: out of memory; make the model, the batch or the dataset smaller",
            file=sys.stderr,
        )
        return 2
    except Interrupted as exc:  # SIGINT or SIGTERM while training: stopped at a step boundary
        print(f"plugnet: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("plugnet: interrupted", file=sys.stderr)
        return 130


def command():
    """The ``plugnet`` command: `main` on the process's arguments, then a quick exit.

    Once the command is done, the interpreter's shutdown would run the garbage collector
    over every object numpy, scipy, scikit-learn and Optuna created: a fifth of a second
    of every command (0.32 s to exit after a sweep's imports, 0.15 s with this).  One
    collection finds what is garbage now (and runs its finalizers, as the shutdown's would
    have), and freezing the rest spares the shutdown its repeated passes.  Skipping the
    shutdown's clean-up altogether (``os._exit`` once threads, ``atexit`` handlers and open
    files are dealt with) measured 0.045 s from here to the end against 0.084 s with this:
    too little for reimplementing the shutdown on Python's private functions."""
    status = main()
    gc.collect()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(command())
