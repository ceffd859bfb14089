"""Model providers, the model catalog, built-in tiny models and the loaded-model cache.

Heavy libraries (torch, diffusers, transformers, open_clip) are imported only inside this
package, and only when a model is loaded.
"""
