"""Data: datasets, transforms, collate functions, samplers, data preprocessors and the
per-sample records (``structures``).

Nothing is imported here, so that ``import vistra.data.<module>`` stays cheap; the
registries import ``vistra.data.datasets``, ``vistra.data.transforms``,
``vistra.data.collate`` and ``vistra.data.samplers`` themselves on first lookup.
"""
