"""The transformer pieces a GPT needs (issue: GPT): gelu, adamw, clip_norm, layer_norm and
attention without bias, attention dropout, a dense layer tied to an embedding, and config
blocks with ``repeat``.  Each is compared with PyTorch where PyTorch has it (skipped
without torch); gradients against finite differences are in test_gradients.py and below."""

import json

import numpy as np
import pytest

from framework import ConfigError, Input, Model, ShapeError, create, testing
from framework.cli import main
from framework.model import model_from_config
from framework.trainer import clip_gradients


def perturbed(layer, seed=1, scale=0.3):
    rng = np.random.default_rng(seed)
    for value in layer.params.values():
        value[...] = scale * rng.normal(size=value.shape)
    return layer


# --- gelu --------------------------------------------------------------------------------------


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_pytorch(approximate):
    torch = pytest.importorskip("torch")
    gelu = create("activations", "gelu", approximate=approximate)
    z = np.random.default_rng(0).normal(scale=3, size=(6, 7))
    g = np.random.default_rng(1).normal(size=z.shape)
    a = gelu.forward(z)
    grad = gelu.backward(z, a, g)
    zt = torch.tensor(z, requires_grad=True)
    out = torch.nn.GELU(approximate=approximate)(zt)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-12, atol=1e-14)
    # float32 stays float32
    assert gelu.forward(z.astype(np.float32)).dtype == np.float32


def test_float32_gelu_is_within_float32_error_of_exact():
    """float32's Φ comes from a rational formula (A&S 7.1.26), float64's from scipy's erf."""
    z = np.concatenate([np.linspace(-12, 12, 20001), [0.0, -0.0]])
    exact, fast = create("activations", "gelu"), create("activations", "gelu")
    a = exact.forward(z)
    slope = exact.backward(z, a, np.ones_like(z))
    z32 = z.astype(np.float32)
    a32 = fast.forward(z32)
    slope32 = fast.backward(z32, a32, np.ones_like(z32))
    assert a32.dtype == slope32.dtype == np.float32
    assert np.all(np.abs(a32 - a) <= 3e-7 * (1 + np.abs(z)))
    assert np.all(np.abs(slope32 - slope) <= 5e-7 * (1 + np.abs(z)))


def test_gelu_backward_on_another_z_recomputes():
    gelu = create("activations", "gelu")
    z1, z2 = np.linspace(-3, 3, 7), np.linspace(-1, 2, 7)
    gelu.forward(z1)
    fresh = create("activations", "gelu")
    assert np.array_equal(gelu.backward(z2, None, np.ones(7)), fresh.backward(z2, None, np.ones(7)))


# --- adamw and clipping ------------------------------------------------------------------------


@pytest.mark.parametrize("decay", ["matrices", "all"])
def test_adamw_matches_pytorch_over_several_steps(decay):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(4, 3)), rng.normal(size=(3,)), rng.normal(size=(2, 2, 2))]
    theirs = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    options = {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "epsilon": 1e-8, "weight_decay": 0.1}
    ours = create("optimizers", "adamw", decay=decay, **options)
    groups = [
        {"params": [t for t in theirs if decay == "all" or t.ndim >= 2], "weight_decay": 0.1},
        {"params": [t for t in theirs if decay == "matrices" and t.ndim < 2], "weight_decay": 0.0},
    ]
    torch_opt = torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for _ in range(5):
        grads = [rng.normal(size=p.shape) for p in params]
        ours.step(params, grads)
        for t, g in zip(theirs, grads, strict=True):
            t.grad = torch.from_numpy(g.copy())
        torch_opt.step()
    for p, t in zip(params, theirs, strict=True):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_norm_matches_clip_grad_norm(max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(4, 3)), rng.normal(size=(5,))]
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.from_numpy(g.copy())
    expected = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    assert clip_gradients(grads, max_norm) == pytest.approx(expected, rel=1e-12)
    for t, g in zip(tensors, grads, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


def test_grad_norm_is_logged_and_clipping_bounds_the_update():
    from framework import Sequential, Trainer

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.integers(0, 2, size=32)
    model = Sequential([{"type": "dense", "units": 2, "activation": "softmax"}], (4,), seed=0)
    trainer = Trainer(model, "cross_entropy", {"type": "sgd", "lr": 1.0}, clip_norm=1e-3)
    logged = []

    class Watch:
        from framework import hookimpl

        @hookimpl
        def on_batch_end(self, trainer, step, logs):
            logged.append(logs["grad_norm"])

    trainer.add_callback(Watch())
    before = model.get_params()
    trainer.fit(x, y, epochs=1, batch_size=32)
    assert len(logged) == 1 and logged[0] > 1e-3
    assert np.linalg.norm(model.get_params() - before) <= 1e-3 * (1 + 1e-3)  # float32 parameters


# --- layer norm and attention without bias ------------------------------------------------------


def test_layer_norm_without_bias_matches_pytorch():
    torch = pytest.importorskip("torch")
    model = create("layers", "layer_norm", use_bias=False)
    from framework import Sequential

    layer = perturbed(Sequential([model], (5, 6), dtype="float64").layers[0])
    assert set(layer.params) == {"gamma"}
    x = np.random.default_rng(0).normal(size=(3, 5, 6))
    g = np.random.default_rng(1).normal(size=x.shape)
    y = layer.forward(x, True)
    grad_x = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    gamma = torch.tensor(layer.params["gamma"], requires_grad=True)
    out = torch.nn.functional.layer_norm(xt, (6,), gamma, None, 1e-5)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layer.grads["gamma"], gamma.grad.numpy(), rtol=1e-9)


def test_attention_without_bias_matches_pytorch():
    torch = pytest.importorskip("torch")
    from framework import Sequential

    n, steps, size, heads = 2, 6, 8, 2
    spec = {"type": "multi_head_attention", "num_heads": heads, "causal": True, "use_bias": False}
    layer = perturbed(Sequential([spec], (steps, size), dtype="float64").layers[0])
    assert not any(key.endswith("bias") for key in layer.params)
    x = np.random.default_rng(0).normal(size=(n, steps, size))
    g = np.random.default_rng(1).normal(size=x.shape)
    y = layer.forward(x, True)
    grad_x = layer.backward(g)
    net = torch.nn.MultiheadAttention(size, heads, bias=False, batch_first=True).double()
    p = layer.params
    with torch.no_grad():
        net.in_proj_weight.copy_(
            torch.from_numpy(
                np.concatenate([p["query_weights"].T, p["key_weights"].T, p["value_weights"].T])
            )
        )
        net.out_proj.weight.copy_(torch.from_numpy(p["output_weights"].T))
    xt = torch.tensor(x, requires_grad=True)
    mask = torch.triu(torch.ones(steps, steps, dtype=torch.bool), 1)
    out, _ = net(xt, xt, xt, attn_mask=mask, need_weights=False)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        layer.grads["output_weights"], net.out_proj.weight.grad.numpy().T, rtol=1e-9, atol=1e-12
    )


def test_attention_dropout_drops_weights_in_training_only():
    from framework import Sequential

    spec = {"type": "multi_head_attention", "num_heads": 2, "causal": True, "dropout": 0.5}
    model = Sequential([spec], (6, 4), dtype="float64", seed=0)
    layer = model.layers[0]
    x = np.random.default_rng(0).normal(size=(3, 6, 4))
    evaluation = layer.forward(x, False)
    assert layer.kept_weights is layer.attention_weights
    training = layer.forward(x, True)
    dropped = layer.kept_weights
    assert not np.allclose(evaluation, training)
    zeros = (dropped == 0) & (layer.attention_weights > 0)
    assert 0.3 < zeros.sum() / (layer.attention_weights > 0).sum() < 0.7
    np.testing.assert_allclose(dropped[~zeros], 2 * layer.attention_weights[~zeros])
    assert testing.check_layer(spec, input_shape=(5, 4)) < 1e-6


# --- tied embedding and projection --------------------------------------------------------------


def tied_model(vocab=7, size=4, steps=5, dtype="float64", units=None):
    ids = Input((steps,), name="ids")
    h = create("layers", "embedding", input_dim=vocab, output_dim=size, name="tokens")(ids)
    h = create("layers", "layer_norm")(h)
    y = create("layers", "dense", units=units or vocab, tied_to="tokens", use_bias=False)(h)
    return Model(ids, y, dtype=dtype, seed=0)


def test_tied_projection_is_one_parameter_with_both_gradients_matching_pytorch():
    torch = pytest.importorskip("torch")
    model = tied_model()
    assert [f"{layer}/{key}" for layer, key, _ in model.parameters()] == [
        "tokens/weights",
        "layer_norm_1/gamma",
        "layer_norm_1/beta",
    ]
    weights = model.layers[0].params["weights"]
    weights[...] = np.random.default_rng(1).normal(size=weights.shape)
    ids = np.random.default_rng(0).integers(0, 7, size=(3, 5))
    g = np.random.default_rng(2).normal(size=(3, 5, 7))
    y = model.forward(ids, True)
    model.backward(g, input_grad=False)

    wt = torch.tensor(weights.copy(), requires_grad=True)
    h = torch.nn.functional.layer_norm(wt[torch.from_numpy(ids)], (4,))
    out = h @ wt.T
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(model.layers[0].grads["weights"], wt.grad.numpy(), rtol=1e-9)

    def objective():
        return np.vdot(g, model.forward(ids, True))

    numeric = testing.numeric_gradient(objective, weights)
    model.forward(ids, True)
    model.backward(g, input_grad=False)
    testing.compare(model.layers[0].grads["weights"], numeric, "tied weights")


def test_tied_projection_is_saved_once(tmp_path):
    from framework import load_model

    model = tied_model(dtype="float32")
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as arrays:
        assert sorted(k for k in arrays.files if k != "architecture") == [
            "layer_norm_1/beta",
            "layer_norm_1/gamma",
            "tokens/weights",
        ]
    again = load_model(path)
    ids = np.random.default_rng(0).integers(0, 7, size=(2, 5))
    np.testing.assert_array_equal(again.predict(ids), model.predict(ids))


def test_tied_to_bad_names_and_shapes():
    with pytest.raises(ShapeError, match="units = 7"):
        tied_model(units=6)
    x = Input((4,))
    h = create("layers", "dense", units=4, name="first")(x)
    with pytest.raises(ConfigError, match="must name an embedding"):
        Model(x, create("layers", "dense", units=4, tied_to="first")(h))
    x = Input((4,))
    with pytest.raises(ConfigError, match="no layer before it"):
        Model(x, create("layers", "dense", units=4, tied_to="nowhere")(x))


# --- config blocks ----------------------------------------------------------------------------

BLOCK = {
    "layers": [
        {"type": "layer_norm", "name": "ln"},
        {"type": "multi_head_attention", "num_heads": 2, "causal": True, "name": "attn"},
        {"type": "add", "inputs": ["input", "attn"], "name": "residual"},
    ]
}


def test_blocks_repeat_with_names_scoped_per_copy():
    layers = [
        {"type": "embedding", "input_dim": 7, "output_dim": 4, "name": "tokens"},
        {"block": "block", "repeat": 3},
        {"type": "dense", "units": 7, "tied_to": "tokens"},
    ]
    model = model_from_config(layers, input_shape=(5,), blocks={"block": BLOCK})
    names = [layer.name for layer in model.layers]
    assert names[:4] == ["tokens", "block_0/ln", "block_0/attn", "block_0/residual"]
    assert names[-2:] == ["block_2/residual", "dense_10"]  # its index once expanded
    assert model.inbound["block_1/residual"] == ["block_0/residual", "block_1/attn"]
    assert model.inbound["block_0/ln"] == ["tokens"]
    ids = np.random.default_rng(0).integers(0, 7, size=(2, 5))
    assert model.predict(ids).shape == (2, 5, 7)


def config_text(blocks_extra="", entry='{ block = "block", repeat = 2 }'):
    return f"""
seed = 0
[data]
type = "reverse_sequence"
length = 6
vocab = 5
n_samples = 64
[model]
layers = [
  {{ type = "embedding", input_dim = 5, output_dim = 8, name = "tokens" }},
  {entry},
  {{ type = "dense", units = 5, tied_to = "tokens", activation = "softmax" }},
]
[model.blocks.block]
layers = [
  {{ type = "layer_norm", use_bias = false, name = "ln" }},
  {{ type = "multi_head_attention", num_heads = 2, use_bias = false, name = "attn" }},
  {{ type = "add", inputs = ["input", "attn"], name = "residual" }},
  {{ type = "dense", units = 8, activation = "gelu", name = "mlp" }},
{blocks_extra}]
[train]
loss = "cross_entropy"
optimizer = {{ type = "adamw", lr = 0.01, weight_decay = 0.1 }}
clip_norm = 1.0
epochs = 2
batch_size = 16
"""


def test_config_with_blocks_trains_and_set_reaches_block_keys(tmp_path, capsys):
    path = tmp_path / "gpt.toml"
    path.write_text(config_text())
    logdir = tmp_path / "run"
    code = main(
        [
            "train",
            str(path),
            "--quiet",
            "--logdir",
            str(logdir),
            "--set",
            "model.blocks.block.layers.1.num_heads=4",
            "--set",
            "model.layers.1.repeat=3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((logdir / "summary.json").read_text())
    assert "grad_norm" in summary["train"]
    from framework import load_model

    model = load_model(logdir)
    assert model.layers[-2].name == "block_2/mlp"
    assert model.layers[2].num_heads == 4


@pytest.mark.parametrize(
    "extra, entry, message",
    [
        ("", '{ block = "blok" }', "no block named 'blok'"),
        ('  { block = "block" },\n', '{ block = "block" }', "uses itself"),
        ("", '{ block = "block", repeat = 0 }', "repeat must be an integer >= 1"),
        ("", '{ type = "dense", units = 8, tied_to = "nothing" }', "tied_to = 'nothing'"),
    ],
)
def test_bad_blocks_are_one_message_and_exit_2(tmp_path, capsys, extra, entry, message):
    path = tmp_path / "bad.toml"
    path.write_text(config_text(extra, entry))
    logdir = tmp_path / "run"
    code = main(["train", str(path), "--quiet", "--logdir", str(logdir)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not logdir.exists()


@pytest.mark.parametrize(
    "setting, message",
    [
        ("train.clip_norm=0", "clip_norm"),
        ("train.optimizer.weight_decay=-1", "weight_decay"),
        (
            'model.blocks.block.layers.3.activation={type="gelu", approximate="exact"}',
            "approximate",
        ),
        ("model.blocks.block.layers.1.dropout=1.0", "dropout"),
        ('model.layers.2.tied_to="tokens"', "units = 5"),
    ],
)
def test_bad_gpt_settings_are_one_message_and_exit_2(tmp_path, capsys, setting, message):
    path = tmp_path / "gpt.toml"
    path.write_text(config_text())
    logdir = tmp_path / "run"
    extra = ["--set", "model.layers.2.units=6"] if "tied_to" in setting else []
    code = main(["train", str(path), "--quiet", "--logdir", str(logdir), "--set", setting, *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not logdir.exists()


# --- the GPT example: Python, config, ONNX -------------------------------------------------------

EXAMPLES = __import__("os").path.join(__import__("os").path.dirname(__file__), "..", "examples")


def small_gpt(**sizes):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpt_example", f"{EXAMPLES}/gpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.gpt(
        **{"vocab_size": 11, "block_size": 8, "layers": 2, "heads": 2, "channels": 8, **sizes}
    )


def test_gpt_example_builds_nanogpts_model():
    _, model = small_gpt(vocab_size=65, block_size=64, layers=4, heads=4, channels=128)
    assert model.num_params == 804_096  # nanoGPT: "number of parameters: 0.80M" (+ wpe)
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["wte", "wpe", "block_0/ln_1"] and names[-1] == "lm_head"
    assert model.layers[-1].tied is model.layers[0]


def test_gpt_exports_to_onnx_with_the_tied_matrix_once(tmp_path):
    pytest.importorskip("onnxruntime")
    from framework.onnx_export import export_onnx, largest_difference, to_onnx

    _, model = small_gpt()
    ids = np.random.default_rng(0).integers(0, 11, size=(5, 8))
    path = export_onnx(model, tmp_path / "gpt.onnx")
    difference, scale = largest_difference(model, path, ids)
    assert difference <= 1e-5 * scale
    initializers = [t.name for t in to_onnx(model).graph.initializer]
    assert sum(name.endswith("weights") and name.startswith("wte") for name in initializers) == 1
    assert not any(name.startswith("lm_head") for name in initializers)
    ops = {node.op_type for node in to_onnx(model).graph.node}
    assert {"Erf", "LayerNormalization", "Softmax", "Transpose"} <= ops


def test_gpt_example_trains_its_loss_down():
    module, model = small_gpt()
    from framework import Trainer

    rng = np.random.default_rng(0)
    corpus = np.tile(np.arange(11), 40)  # a text that repeats: easy to learn
    x, y = module.windows(corpus, 8, 12 * 60, rng)
    trainer = Trainer(model, "cross_entropy", module.adamw(3e-3), clip_norm=1.0, seed=0)
    before = trainer.evaluate(x[:48], y[:48])["loss"]
    trainer.fit(x, y, epochs=1, batch_size=12)
    assert trainer.evaluate(x[:48], y[:48])["loss"] < 0.6 * before


def test_shakespeare_config_trains_a_few_steps_on_a_small_text(tmp_path, capsys):
    text = tmp_path / "shakespeare.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    logdir = tmp_path / "run"
    code = main(
        [
            "train",
            f"{EXAMPLES}/shakespeare_char.toml",
            "--quiet",
            "--logdir",
            str(logdir),
            "--set",
            f'data.path="{text}"',
            "--set",
            "train.steps=4",
            "--set",
            "train.evaluate_every=2",
            "--set",
            "train.eval_batches=2",
            "--set",
            'train.callbacks=[{type="lr_schedule", schedule="cosine", warmup=1, min_lr=1e-4}]',
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((logdir / "summary.json").read_text())
    assert summary["steps"] == 4 and np.isfinite(summary["test"]["loss"])


def test_tensorboard_graph_groups_each_block_copy():
    from framework.summaries import model_graph

    model = model_from_config(
        [
            {"type": "embedding", "input_dim": 7, "output_dim": 4, "name": "tokens"},
            {"block": "block", "repeat": 2},
            {"type": "dense", "units": 7, "tied_to": "tokens"},
        ],
        input_shape=(5,),
        blocks={"block": BLOCK},
    )
    nodes = {node.name: list(node.input) for node in model_graph(model).node}
    assert {name.split("/")[0] for name in nodes} == {
        "input",
        "tokens",
        "block_0",
        "block_1",
        "dense_7",
    }
    assert "block_1/attn/query_weights" in nodes  # each copy's parameters inside its group
    assert "tokens/weights" in nodes["dense_7/matmul"]  # the shared matrix's edge


def test_a_gpt_run_resumed_from_a_checkpoint_ends_with_the_same_weights(tmp_path):
    """clip_norm, adamw's moments and attention's joined Q/K/V views through a checkpoint."""
    from framework import load_model, run
    from framework.config import apply_overrides, load_config

    text = tmp_path / "shakespeare.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40)
    config = apply_overrides(
        load_config(f"{EXAMPLES}/shakespeare_char.toml"),
        [
            f'data.path="{text}"',
            "train.steps=6",
            "train.evaluate_every=3",
            "train.eval_batches=2",
            'train.callbacks=[{type="lr_schedule", warmup=2, total=6, min_lr=1e-4}, '
            '{type="checkpoint", every=3}]',
            "model.layers.2.repeat=2",
        ],
    )
    whole = {**config, "logging": {"logdir": str(tmp_path / "whole")}}
    run(whole)
    first = apply_overrides(config, ["train.steps=3"])
    run({**first, "logging": {"logdir": str(tmp_path / "cut")}})
    run(config, resume=tmp_path / "cut")
    a, b = load_model(tmp_path / "whole"), load_model(tmp_path / "cut")
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)


@pytest.mark.parametrize("spread", [4.0, 60.0, 200.0, np.inf, np.nan])
def test_attention_softmax_matches_the_row_wise_form_whatever_the_spread(spread):
    """One shift for the whole block where the scores lie within 64 of one another, the
    row's maximum otherwise (and for inf / NaN): the same probabilities either way."""
    from plugins.layers.attention import softmax_rows

    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.5, 0.5, size=(3, 2, 8, 8)) * (spread if np.isfinite(spread) else 1)
    if not np.isfinite(spread):
        scores[1, 0, 2, 3] = spread
    mask = np.where(np.triu(np.ones((8, 8), bool), 1), -np.inf, 0.0)
    for dtype in (np.float32, np.float64):
        block = scores.astype(dtype)
        with np.errstate(invalid="ignore"):  # inf − inf: a NaN row either way
            expected = block + mask
            expected = np.exp(expected - expected.max(axis=-1, keepdims=True))
            expected /= expected.sum(axis=-1, keepdims=True)
            got = block.copy()
            softmax_rows(got, mask.astype(dtype))
        tolerance = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * 1e-3)
        assert (got[..., np.triu(np.ones((8, 8), bool), 1)] == 0).all() or not np.isfinite(spread)
