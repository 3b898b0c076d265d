"""The engine: everything that turns a rendered prompt, a config and a seed into a cached completion.
It knows nothing of the study (tests/test_architecture.py keeps it from importing it).

- ``protocol``: what callers may use of any backend (``render``, ``generate``, ``key``, ``default_config``).
- ``factory``: the one place an engine is built, from a profile and an adapter folder.
- ``requests``: requests, completions and their cache keys.
- ``sampling``: per-row penalties, temperature, top-k/top-p, min-p, EDT and seeded draws.
- ``kv``: the decode batch and its growable KV cache; how many rows fit.
- ``engine``: the in-house engine (continuous batching, resumable groups, a cache-only mode).
- ``decode_step``: the "fused" decode step.
- ``models``, ``adapter``: model files and specs; the adapter folder format and its receipt.
- ``cache``: the completion cache. ``vllm_backend``, ``vllm_worker``: vLLM as a backend.
"""
