"""Triton Inference Server support: model repository writer, server launcher, client runner.

``repo.write_repository`` turns an export folder (or a bundle) into a Triton model repository,
``server.TritonServer`` starts the ``tritonserver`` binary that nvidia-pytriton bundles, and
``runner.TritonRunner`` is the Runner (docs/INTERFACES.md) that executes a network on a server.
"""
