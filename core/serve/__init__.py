"""The serving half of Tierplan: a prefix KV cache across requests on HBM, DDR, SSD and pooled memory.

Modules, one concept each, data flowing one way:

- :mod:`core.serve.trace`     requests from Mooncake JSONL, Azure CSV or the seeded generator
- :mod:`core.serve.policies`  eviction policies over 512-token prefix blocks (``lru`` reference … ``belady``)
- :mod:`core.serve.capacity`  sequence-only hit rate of a cache of N blocks
- :mod:`core.serve.model`     KV bytes per block, prefill and decode cost from an HF config
- :mod:`core.serve.simulate`  the timed, tiered simulation and its log
- :mod:`core.serve.check`     an independent replay check of that log
- :mod:`core.serve.command`   ``python -m core serve``
"""
