"""sd-model-server: a local stand-in for tensorflow_model_server with TF Serving's REST and gRPC API.

It loads every model version of a ModelServerConfig with the TF1 session loader (the way TF Serving runs a
SavedModel) and answers Predict, GetModelMetadata and GetModelStatus as TF Serving does, for machines without Docker
or a GPU. TF Serving stays the production engine (compose.yaml).
"""
