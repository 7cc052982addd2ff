"""Quantization-aware fine-tuning (QAT) with each target's own int8 scheme.

The network is trained *as the deployed graph*: the fp32 ONNX model the target
quantizes (fpga: the lowered model - BN folded, Conv3d split into temporal taps
of Conv2d, hard activations - after :func:`quant.pow2.fold_constants`; onnxruntime
/ openvino: the exported model with BN folded) is run in PyTorch by
:class:`GraphNet`, a small batched interpreter whose Conv/Gemm/MatMul weights and
biases are the trainable parameters, with fake quantization at the points the
target's quantizer will put its Quantize/DequantizeLinear pairs.  BN is folded
before QAT, so the weights that are fake-quantized are the ones the integer
model holds.  After training, :meth:`GraphNet.to_onnx` writes the weights back
into the fp32 ONNX model and the normal compile path quantizes it
(``targets.fpga`` / ``targets.onnxruntime`` ...).

Schemes (:data:`SCHEMES`; :data:`TARGET_SCHEME` maps targets to them):

* ``"pow2"`` (fpga): what :func:`quant.pow2.quantize` applies, with its own code:
  quantization points :func:`quant.pow2.quant_points` (outputs of compute ops,
  past a fused Relu/Clip; the network input; not the logits, which stay int32);
  weights symmetric per-tensor int8 at scale ``2^-f`` with ``f`` from
  :func:`quant.pow2.frac_for_tensor` (recomputed every step from the current
  weights); activations symmetric per-tensor int8 at ``2^-f`` with ``f`` from
  :func:`quant.pow2.calibrate` on the calibration clips (recomputed after every
  epoch and once at the end); biases rounded to int32 at ``f_in + f_w``; the
  constant operands of Add/Mul (hard-sigmoid's 3 and 1/6) as int8 at their own
  power-of-two scale.  Since export runs the same functions on the same weights
  and clips, the exported QDQ model has exactly the scales the QAT model was
  last evaluated with.  Activations round as the device does (``rounding=
  "half_up"``, :mod:`quant.intsim`'s DPU rule: the fake-quant module then equals
  the simulator's logits to float rounding) or as ONNX QuantizeLinear does
  (``"half_even"``: equals the QDQ model on ONNX Runtime); weights, biases and
  the network input are rounded on the host, half to even, either way.
* ``"int8"`` (onnxruntime, openvino): weights symmetric per-output-channel int8
  (``max|w_c| / 127``, range [-127, 127]), activations per-tensor affine int8
  from min/max over the calibration clips, at the network input and the outputs
  of compute ops (Conv, Gemm, MatMul, Add, Mul, pools, Concat, Sigmoid): close to,
  not identical with, where ORT's and NNCF's quantizers put them; the export is
  the ordinary PTQ of the fine-tuned fp32 model by the target's own tool.

Fake quantization is torch's ``fake_quantize_per_tensor_affine`` /
``fake_quantize_per_channel_affine`` (straight-through estimator, zero gradient
outside the int8 range); scales are not learned (power-of-two by construction,
from calibration).

Training (:func:`finetune`): cross entropy on labelled uint8 clips, AdamW, cosine
schedule, a checkpoint (weights, scales, optimizer, history) after every epoch that
``resume`` continues from.  The job behind ``edgevid qat`` (lowering for the target,
export, compile, fidelity) is :mod:`edge.qat`.

Modules: :mod:`quant.qat.scheme` (schemes, ``qat_graph``, ``int8_points``),
:mod:`quant.qat.ops` (batched ONNX operators), :mod:`quant.qat.net` (``GraphNet``),
:mod:`quant.qat.finetune` (``QatConfig``, ``finetune``, ``evaluate``).
"""
from __future__ import annotations

from quant.qat.finetune import QatConfig, QatResult, evaluate, finetune
from quant.qat.net import GraphNet, fake_quantize_half_up
from quant.qat.scheme import INT8_POINT_OPS, ROUNDINGS, SCHEMES, TARGET_SCHEME, int8_points, qat_graph

__all__ = ["GraphNet", "INT8_POINT_OPS", "QatConfig", "QatResult", "ROUNDINGS", "SCHEMES", "TARGET_SCHEME", "evaluate",
           "fake_quantize_half_up", "finetune", "int8_points", "qat_graph"]
