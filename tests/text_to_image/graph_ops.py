"""Which op types a SavedModel uses, and which ones stock tensorflow_model_server can run.

The model server links every kernel that `import tensorflow` registers and TF Text's ops, but it runs no Python, so
the ops that call back into Python (PyFunc, EagerPyFunc, PyFuncStateless) fail there (decisions.md, text_to_image).
"""

import json
import subprocess
import sys
from functools import lru_cache

PYTHON_CALLBACK_OPS = frozenset({"PyFunc", "EagerPyFunc", "PyFuncStateless"})

_LIST_REGISTERED_OPS = """
import json, tensorflow, tensorflow_text
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session
ops = op_def_pb2.OpList()
ops.ParseFromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList()))
print(json.dumps(sorted(op.name for op in ops.op)))
"""


def graph_op_types(meta_graph_def):
    """Every op type in the MetaGraphDef's graph and in each function of its library.

    Nodes that call a library function by name are left out: that function's own nodes are listed instead."""
    graph = meta_graph_def.graph_def
    functions = graph.library.function
    nodes = [*graph.node, *(node for function in functions for node in function.node_def)]
    return {node.op for node in nodes} - {function.signature.name for function in functions}


@lru_cache
def served_op_types():
    """Op types registered by `import tensorflow, tensorflow_text` in a fresh interpreter, minus Python callbacks.

    A fresh interpreter, because whatever else this process imported may have registered more ops."""
    listing = subprocess.run(
        [sys.executable, "-c", _LIST_REGISTERED_OPS], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(json.loads(listing.strip().splitlines()[-1])) - PYTHON_CALLBACK_OPS


def unserved_op_types(meta_graph_def):
    """The op types of the graph that the model server does not have (empty when it can run the graph)."""
    return graph_op_types(meta_graph_def) - served_op_types()
