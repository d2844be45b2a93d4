"""Compose and train a model in Python instead of a TOML config.

    python examples/compose.py [--epochs 60] [--seed 0]

Two moons from the built-in dataset, a 2-16-16-2 tanh network with a dropout layer, SGD with
momentum; prints the model summary, the training history's last line and the held-out
evaluation.  Every component is made by its registered name, exactly as a config names it,
so a plugin's components are used the same way.
"""

import argparse

import numpy as np

from framework import Sequential, Trainer, create


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = create("datasets", "moons", n_samples=1000, noise=0.2, test_fraction=0.2)
    x_train, y_train, x_test, y_test = data.load(np.random.default_rng(args.seed))

    model = Sequential(
        [
            create("layers", "dense", units=16, activation="tanh"),
            create("layers", "dropout", rate=0.1),
            # a mapping works wherever a component is expected, as in a config file
            {"type": "dense", "units": 16, "activation": "tanh", "weight_init": "glorot_normal"},
            create("layers", "dense", units=2, activation="softmax"),
        ],
        input_shape=x_train.shape[1:],
        seed=args.seed,
    )
    print(model.summary())

    trainer = Trainer(
        model,
        loss="cross_entropy",
        optimizer={"type": "sgd", "lr": 0.1, "momentum": 0.9},
        metrics=["accuracy"],
        seed=args.seed,
    )
    history = trainer.fit(
        x_train, y_train, epochs=args.epochs, batch_size=32, validation_data=(x_test, y_test)
    )
    print(f"after {len(history['loss'])} epochs: train loss {history['loss'][-1]:.4f}")

    results = trainer.evaluate(x_test, y_test)
    print("test " + "  ".join(f"{name} {value:.4f}" for name, value in results.items()))
    predicted = model.predict(x_test[:5]).argmax(axis=1)
    print(f"first five test points: predicted {predicted.tolist()}, true {y_test[:5].tolist()}")


if __name__ == "__main__":
    main()
