"""A residual network built in Python: examples/resnet_mnist.toml with Keras' functional API.

    PLUGNET_DATA=/path/to/data python examples/compose_graph.py [--epochs 2] [--train-samples N]

`Input` stands for a batch of images; calling a layer on it (or on another layer's output)
places the layer in the graph and returns its output, so a skip connection is just a tensor
used twice: once by the block's convolutions and once by the `add` that closes the block.
`Model(inputs, outputs)` then trains, evaluates, checkpoints and logs to TensorBoard as a
`Sequential` does.
"""

import argparse

import numpy as np

from framework import Input, Model, Trainer, create


def residual_block(x, filters):
    """conv → batch norm → relu → conv → batch norm, added to the block's input, relu."""
    h = create("layers", "conv2d", filters=filters, kernel_size=3, use_bias=False)(x)
    h = create("layers", "batch_norm")(h)
    h = create("layers", "activation", activation="relu")(h)
    h = create("layers", "conv2d", filters=filters, kernel_size=3, use_bias=False)(h)
    h = create("layers", "batch_norm")(h)
    return create("layers", "add", activation="relu")([x, h])  # the skip connection


def build_model(seed=0):
    images = Input((28, 28, 1), name="image")
    h = create("layers", "conv2d", filters=32, kernel_size=3, activation="relu")(images)
    h = create("layers", "maxpool2d", pool_size=2)(h)
    h = residual_block(h, 32)
    h = create("layers", "maxpool2d", pool_size=2)(h)
    h = residual_block(h, 32)
    h = create("layers", "global_avgpool2d")(h)
    y = create("layers", "dense", units=10, activation="softmax")(h)
    return Model(inputs=images, outputs=y, seed=seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--train-samples", type=int, default=None, help="a random subset of the training images"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default=None, help="write TensorBoard summaries here")
    args = parser.parse_args(argv)

    data = create("datasets", "mnist", train_samples=args.train_samples)
    x_train, y_train, x_test, y_test = data.load(np.random.default_rng(args.seed))
    model = build_model(args.seed)
    print(model.summary())
    callbacks = [{"type": "lr_schedule", "schedule": "one_cycle"}]  # up to Adam's lr, then down
    if args.logdir:
        callbacks.append({"type": "tensorboard", "histogram_every": 500})
    trainer = Trainer(
        model, loss="cross_entropy", optimizer={"type": "adam", "lr": 0.004}, metrics=["accuracy"],
        callbacks=callbacks, logdir=args.logdir, seed=args.seed,
    )  # fmt: skip
    trainer.fit(
        x_train, y_train, epochs=args.epochs, batch_size=32, validation_data=(x_test, y_test)
    )
    print(
        "test:", {key: round(value, 4) for key, value in trainer.evaluate(x_test, y_test).items()}
    )


if __name__ == "__main__":
    main()
