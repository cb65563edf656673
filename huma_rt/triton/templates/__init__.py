"""Python-backend model sources copied into a model repository as ``<model>/1/model.py``.

They run inside Triton's python-backend stub, in the models' own environment (numpy<2 and
onnxruntime), so they import nothing from huma_rt.
"""
