"""Triton model repository generation.

========================  =================================================================
``generate``              ``generate()``: ONNX -> repository for a target (the one entry point)
``options``               ``RepositoryOptions``: the options every target shares, checked
``targets/``              the registry (``registry``) and one module per target; ``tensorrt``
                          is what ``gpu`` and ``jetson`` share, ``plan`` their plan handling
``pipeline``              the shared stages: preprocess, postprocess, ensemble, their tensors
``shipping``              which runtime files a Python stage ships (read from its imports)
``stages``                one validated config object per Triton stage kind
``render``                strict Jinja2 rendering, checked by Triton's own config schema
``writer``                the atomic write of the whole folder
``names``                 model and tensor name checks
========================  =================================================================
"""
