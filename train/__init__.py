"""Making a person's avatar from a video: tracking, the differentiable rasterizer, fitting.

Training may import the runtime (formats, bundle packing), ``export/`` and ``kernels/``; the
runtime never imports this package. Needs the ``export`` extra (torch).
"""
