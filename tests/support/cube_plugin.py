"""A plugin module loaded by name (--plugin / config plugins): a cube activation."""

from framework import Activation, hookimpl


class Cube(Activation):
    """a = z³, da/dz = 3z²."""

    def forward(self, z):
        return z**3

    def backward(self, z, a, grad_a):
        return grad_a * 3 * z**2


@hookimpl
def register_activations():
    return {"cube": Cube}
