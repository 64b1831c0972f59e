"""Export KerasCV Stable Diffusion v1.4 as TensorFlow Serving SavedModels (build time)."""
