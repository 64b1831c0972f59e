"""KerasCV's TextEncoder <- OpenAI's CLIP ViT-L/14 text model as transformers' CLIPTextModel names it.

diffusers folders and CompVis/LDM files both store transformers' names (LDM under `cond_stage_model.transformer.`);
`text_model.` in front of them is optional (transformers >= 5 writes them without): the checkpoint reader strips it.
"""

from sd_export.checkpoints.assign import dense, embedding, norm, of_type

LAYERS = 12
WIDTH = 768


def plan(model):
    """Assignments for every variable of KerasCV's TextEncoder."""
    (embeddings,) = of_type(model, "CLIPEmbedding", 1)
    (final_norm,) = of_type(model, "LayerNormalization", 1)
    assignments = embedding(embeddings.token_embedding, "embeddings.token_embedding")
    assignments += embedding(embeddings.position_embedding, "embeddings.position_embedding")
    for index, layer in enumerate(of_type(model, "CLIPEncoderLayer", LAYERS)):
        key = f"encoder.layers.{index}"
        assignments += norm(layer.layer_norm1, f"{key}.layer_norm1")
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assignments += dense(getattr(layer.clip_attn, projection), f"{key}.self_attn.{projection}")
        assignments += norm(layer.layer_norm2, f"{key}.layer_norm2")
        assignments += dense(layer.fc1, f"{key}.mlp.fc1")
        assignments += dense(layer.fc2, f"{key}.mlp.fc2")
    assignments += norm(final_norm, "final_layer_norm")
    return assignments
