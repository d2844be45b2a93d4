"""Built-in layers.  Each module holds one family; this hook registers them all."""

from framework import hookimpl
from plugins.layers.attention import MultiHeadAttention
from plugins.layers.conv import Conv2D
from plugins.layers.dense import ActivationLayer, Dense
from plugins.layers.dropout import Dropout
from plugins.layers.embedding import Embedding, GlobalAvgPool1D, PositionalEmbedding
from plugins.layers.global_pooling import GlobalAvgPool2D, GlobalMaxPool2D
from plugins.layers.merge import Add, Concatenate, Multiply
from plugins.layers.normalization import BatchNorm, LayerNorm
from plugins.layers.pooling import AvgPool2D, MaxPool2D
from plugins.layers.recurrent import GRU, LSTM, SimpleRNN
from plugins.layers.shape import Flatten, Reshape


@hookimpl
def register_layers():
    return {
        "dense": Dense,
        "activation": ActivationLayer,
        "dropout": Dropout,
        "flatten": Flatten,
        "reshape": Reshape,
        "conv2d": Conv2D,
        "maxpool2d": MaxPool2D,
        "avgpool2d": AvgPool2D,
        "add": Add,
        "concatenate": Concatenate,
        "multiply": Multiply,
        "batch_norm": BatchNorm,
        "layer_norm": LayerNorm,
        "global_avgpool2d": GlobalAvgPool2D,
        "global_maxpool2d": GlobalMaxPool2D,
        "embedding": Embedding,
        "positional_embedding": PositionalEmbedding,
        "global_avgpool1d": GlobalAvgPool1D,
        "simple_rnn": SimpleRNN,
        "lstm": LSTM,
        "gru": GRU,
        "multi_head_attention": MultiHeadAttention,
    }
