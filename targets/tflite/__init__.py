"""LiteRT (TFLite) target: a ``.tflite`` flatbuffer run by the LiteRT interpreter
with the XNNPACK CPU delegate.

Build side (optional extra ``pip install -e .[tflite]``, which brings litert-torch):
the torch model is lowered by :func:`targets.tflite.lower2d.to_2d` (XNNPACK has no 3D
convolution, and litert-torch crashes on X3D's depthwise Conv3d: every Conv3d,
BatchNorm3d and 3D pool becomes 2D ops on a (T, C, H, W) tensor, frames in the
batch axis), BatchNorm is folded into the convs, and litert-torch converts the
result (torch.export -> StableHLO -> TFLite, no TensorFlow).  litert-torch converts
PyTorch modules only: there is no ONNX -> .tflite path without TensorFlow, so
``compile`` refuses an ONNX file and needs the torch model (``edgevid compile
--model NAME``).

Precision: fp32; fp16 = the converted model's conv / fully-connected weights
stored as float16 (ai-edge-quantizer's float-casting recipe, half the file) and
dequantized once when XNNPACK loads them: compute stays fp32 on x86 CPUs.

int8 = full-integer static quantization: the fp32 flatbuffer is rewritten by
ai-edge-quantizer (LiteRT's quantizer) with its ``static_wi8_ai8`` recipe,
calibrated by running the caller's calibration clips (a ``quant.calib.CalibSet``)
through the float model: int8 conv / FC weights
(symmetric per output channel), int8 activations per tensor, int32 bias; every op
of the lowered X3D (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, PAD,
SLICE, MEAN, ...) runs in int8 under XNNPACK.  The interface tensors are int8 too
(the recipe quantizes the graph input and output); the runner quantizes the float
clip and dequantizes the logits with their scale and zero point, so callers pass
float32 and get float32.  Activation ranges: ai-edge-quantizer observes each
tensor's min/max (a moving average of per-clip extremes); edgevid replaces them by
the range minimising the quantization error on a histogram over all calibration
clips (``--calib-method histogram``, the default; ``minmax`` keeps the quantizer's
own).  Measured on the shipped X3D-XS at w1.0-r128-f8, 64 held-out clips, one
process, 2 threads (``python -m benchmarks.studies.quant_bench --models x3d_xs
--no-mixed --held-out 64``, 2026-12-04, 2-core EPYC with AVX-512 VNNI): int8 0.57x
of LiteRT fp32 (13.4 vs 23.6 ms), logit SQNR 26.2 dB, top-1 agreement 0.98; with
min/max ranges 0.58x, 10.3 dB, agreement 0.91.  (litert-torch's own PT2E route - ``prepare_pt2e`` /
``convert_pt2e`` + ``QuantConfig`` - fails on the lowered model: the converter
rejects the temporal zero padding, "'tfl.pad' op quantization parameters violate
the same scale constraint", and the NHWC layout pass stops at "Attempting to
convert non-NHWC compatible node to NHWC: dequantize_per_tensor_1".)

Run side (torch-free): ``ai_edge_litert`` (LiteRT, the successor of
tflite-runtime, which no longer imports under numpy 2) or ``tflite_runtime``
(older boards); XNNPACK is the interpreter's default delegate, ``threads`` sets
its thread count.  Input (1, 3, T, H, W) float32, output (1, classes) logits.

Modules: ``target`` (:class:`TfliteTarget`: available / check / compile / load),
``runner`` (:class:`TfliteRunner`, torch-free), ``convert`` (litert-torch
conversion, ai-edge-quantizer int8 / fp16 rewrites), ``lower2d`` / ``temporal`` /
``fold`` (the exact 3D -> 2D torch lowering and BN folding; torch, imported only
by ``compile``).
"""
from targets.tflite.convert import EXTRA_HINT
from targets.tflite.runner import TfliteRunner, interpreter_module
from targets.tflite.target import LOWER_REASON, MODEL_FILE, POOL_REASON, PRECISIONS, TfliteTarget

__all__ = ["EXTRA_HINT", "LOWER_REASON", "MODEL_FILE", "POOL_REASON", "PRECISIONS", "TfliteRunner",
           "TfliteTarget", "interpreter_module"]
