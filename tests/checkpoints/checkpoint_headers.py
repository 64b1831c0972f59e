"""Header-only stand-ins: tensor names and shapes without data, as a safetensors header gives them."""


class Shaped:
    """A tensor with a shape and no data (reshape keeps it so): for checking plans against real SD 1.4 shapes."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def reshape(self, shape):
        return Shaped(shape)


class HeaderOnly:
    """The store interface over names and shapes alone, as a safetensors header gives them."""

    def __init__(self, shapes):
        self.shapes = {name: tuple(value.shape if isinstance(value, Shaped) else value) for name, value in shapes.items()}

    def keys(self):
        return self.shapes.keys()

    def shape(self, key):
        return self.shapes[key]

    def get(self, key):
        raise AssertionError("a header-only store has no data")
