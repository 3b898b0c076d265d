"""The engine: requests and keys, sampling, the KV cache, the fused step, the model files, the completion cache, the vLLM backend. It knows nothing of the study."""
