"""Triton python-backend model: streaming audio encoder with per-sequence left context.

One sequence = one avatar session (correlation id). Each request carries new log-mel rows
``mel [1, T, n_mels]`` (T a multiple of mels_per_frame; the first request of a sequence starts
with the session's first full receptive window, as StreamingFeatures produces it). The model
appends them to the sequence's context, runs the ``encoder_model`` (a BLS call, so the same
source serves ONNX-Runtime, TensorRT and python encoders) on the whole context and returns the
codes of every frame whose window became complete, ``code [1, F, code_dim]`` (F may be 0).
It keeps the last ``receptive_mels - mels_per_frame`` rows: the left context of the next frame.
State is dropped on END, on a new START of the id, and once a sequence has been idle longer
than the sequence batcher's max_sequence_idle_microseconds (Triton frees the slot then but
does not tell the model, so abandoned sessions would otherwise stay in memory).

Config parameters: encoder_model, receptive_mels, mels_per_frame, n_mels, code_dim.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        p = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.encoder_model = p["encoder_model"]
        self.receptive = int(p["receptive_mels"])
        self.per_frame = int(p["mels_per_frame"])
        self.n_mels = int(p["n_mels"])
        self.code_dim = int(p["code_dim"])
        self.context = {}  # correlation id -> float32 [rows, n_mels]
        self.last_used = {}  # correlation id -> time.monotonic() of its last request
        idle_us = int(config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 0) or 0)
        self.idle_s = idle_us / 1e6 if idle_us > 0 else None

    def _codes(self, rows):
        """rows [R', n_mels] with R' >= receptive -> codes [1, F, code_dim] through the encoder."""
        request = pb_utils.InferenceRequest(
            model_name=self.encoder_model,
            requested_output_names=["code"],
            inputs=[pb_utils.Tensor("mel", np.ascontiguousarray(rows[None], dtype=np.float32))],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"encoder model '{self.encoder_model}' failed: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, "code").as_numpy()

    def _step(self, request):
        corrid = int(pb_utils.get_input_tensor_by_name(request, "CORRID").as_numpy().reshape(-1)[0])
        start = bool(pb_utils.get_input_tensor_by_name(request, "START").as_numpy().reshape(-1)[0])
        end = bool(pb_utils.get_input_tensor_by_name(request, "END").as_numpy().reshape(-1)[0])
        mel = pb_utils.get_input_tensor_by_name(request, "mel").as_numpy()
        if mel.ndim != 3 or mel.shape[0] != 1 or mel.shape[2] != self.n_mels:
            raise ValueError(f"mel must be [1, T, {self.n_mels}], got {list(mel.shape)}")
        if mel.shape[1] % self.per_frame:
            raise ValueError(f"mel rows per request must be a multiple of {self.per_frame}, got {mel.shape[1]}")
        if start or corrid not in self.context:
            if not start:
                raise ValueError(f"sequence {corrid} has no context: its first request must set START")
            self.context[corrid] = np.zeros((0, self.n_mels), np.float32)
        rows = np.concatenate([self.context[corrid], mel[0].astype(np.float32, copy=False)])
        if rows.shape[0] >= self.receptive:
            codes = self._codes(rows)
            frames = codes.shape[1]
            rows = rows[frames * self.per_frame :]
        else:
            codes = np.zeros((1, 0, self.code_dim), np.float32)
        if end:
            self.context.pop(corrid, None)
            self.last_used.pop(corrid, None)
        else:
            self.context[corrid] = np.ascontiguousarray(rows)
            self.last_used[corrid] = time.monotonic()
        return codes

    def _drop_idle(self):
        if self.idle_s is None:
            return
        limit = time.monotonic() - self.idle_s
        for corrid in [c for c, t in self.last_used.items() if t < limit]:
            self.context.pop(corrid, None)
            self.last_used.pop(corrid, None)

    def execute(self, requests):
        self._drop_idle()
        responses = []
        for request in requests:
            try:
                codes = self._step(request)
                responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("code", np.ascontiguousarray(codes, dtype=np.float32))]))
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses

    def finalize(self):
        self.context.clear()
        self.last_used.clear()
