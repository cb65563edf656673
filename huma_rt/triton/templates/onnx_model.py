"""Triton python-backend model: run one ONNX file through onnxruntime (CPU).

Config parameters: ``onnx_file`` (name inside the version folder), ``threads`` (intra-op
threads, default 1). With max_batch_size > 0, the requests of one dynamic batch run as one
onnxruntime call over their concatenation. Inputs and outputs are those of config.pbtxt, passed through unchanged,
so the served model computes exactly what onnxruntime computes locally on the same file.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["onnx_file"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(params.get("threads", "1"))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.max_batch = int(config.get("max_batch_size", 0))

    def _feeds(self, request):
        feeds = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            feeds[name] = np.ascontiguousarray(tensor.as_numpy(), dtype=np.float32)
        return feeds

    def _batched(self, requests):
        """Requests of a dynamic batch with equal trailing shapes: one onnxruntime run over
        their concatenation, split back; None when they cannot be merged."""
        if not self.max_batch or len(requests) < 2:
            return None
        feeds = [self._feeds(r) for r in requests]
        for name in self.inputs:
            if len({f[name].shape[1:] for f in feeds}) != 1:
                return None
        merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        values = self.session.run(self.outputs, merged)
        sizes = np.cumsum([f[self.inputs[0]].shape[0] for f in feeds])[:-1]
        parts = [np.split(v, sizes) for v in values]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(p[i])) for n, p in zip(self.outputs, parts, strict=True)])
            for i in range(len(requests))
        ]

    def execute(self, requests):
        try:
            batched = self._batched(requests)
        except Exception:  # fall back to one run per request, which reports errors per request
            batched = None
        if batched is not None:
            return batched
        responses = []
        for request in requests:
            try:
                feeds = self._feeds(request)
                values = self.session.run(self.outputs, feeds)
                out = [pb_utils.Tensor(n, np.ascontiguousarray(v)) for n, v in zip(self.outputs, values, strict=True)]
                responses.append(pb_utils.InferenceResponse(output_tensors=out))
            except Exception as exc:  # one bad request must not fail the others in the batch
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses

    def finalize(self):
        self.session = None
