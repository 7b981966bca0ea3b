"""cudnnconv's benchmark harness: ``python -m bench --help`` (bench/README.md).

Modules: ``spec`` (layer specs), ``suites`` (built-in layer sets),
``timing`` (CUDA events, graph replay), ``peers`` (PyTorch, JAX),
``runner`` (check then time), ``report`` (JSON, tables, chart, comparison).
"""
