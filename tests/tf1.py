"""Run a SavedModel the way tensorflow_model_server does: the TF1 session loader and the signature's tensor names.

tf.saved_model.load succeeding proves nothing about that path (../shared/notes/pitfalls.md), so every test that runs
an exported model goes through here.
"""

import ctypes
import gc

import tensorflow as tf


class Tf1Model:
    def __init__(self, export_dir):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            self.meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(export_dir))

    def signature(self, name):
        return self.meta_graph.signature_def[name]

    def run(self, signature_name, inputs):
        signature = self.signature(signature_name)
        feeds = {signature.inputs[name].name: value for name, value in inputs.items()}
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        return self.session.run(fetches, feeds)

    def close(self):
        self.session.close()
        self.graph = self.session = self.meta_graph = None
        release_memory()


def release_memory():
    """Give freed memory back to the system. A closed session's weights (4 GB for the real architectures) go back to
    glibc's heap, which keeps the pages: one test process loads several such models in turn, and without this its
    resident memory only grows."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


SPLIT_MODELS = ("text_encoder", "diffusion_model", "decoder")


def served_version(repository, version=1, models=SPLIT_MODELS):
    """A generator for fixtures: {model: Tf1Model} of one version of a repository, closed when the fixture ends."""
    served = {name: Tf1Model(repository / name / str(version)) for name in models}
    try:
        yield served
    finally:
        for model in served.values():
            model.close()
