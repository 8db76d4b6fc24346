// The Node-API surface: each kernel takes the wasm heap's ArrayBuffer, byte offsets of its tensors
// in that heap, and the shape numbers. Offsets and sizes are checked against the heap here, so a
// bad call is a JS exception, never a stray write. The heap is passed at every call because a
// growing wasm memory replaces its buffer.
#include <napi.h>
#include <omp.h>
#include <string>
#include <vector>
#include "batch-norm.h"
#include "conv.h"
#include "dnnl-context.h"
#include "matmul.h"
#include "max-pool.h"

namespace {

using namespace gradfleet;

struct Heap {
  std::uint8_t* base;
  std::size_t bytes;
};

Heap heapOf(const Napi::CallbackInfo& info) {
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(info.Env(), "argument 0 must be the wasm heap's ArrayBuffer");
  auto buffer = info[0].As<Napi::ArrayBuffer>();
  return {static_cast<std::uint8_t*>(buffer.Data()), buffer.ByteLength()};
}

std::vector<double> numbers(const Napi::CallbackInfo& info, std::size_t index, std::size_t count, const char* what) {
  if (!info[index].IsArray()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an array of numbers");
  auto array = info[index].As<Napi::Array>();
  if (array.Length() != count) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + ": expected " + std::to_string(count) + " numbers, got " + std::to_string(array.Length()));
  }
  std::vector<double> out(count);
  for (std::uint32_t i = 0; i < count; i++) {
    Napi::Value v = array[i];
    if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + ": element " + std::to_string(i) + " is not a number");
    out[i] = v.As<Napi::Number>().DoubleValue();
  }
  return out;
}

// A float tensor of `count` elements at byte offset `offset`; offset −1 means "absent" when allowed.
float* tensorAt(const Napi::Env& env, const Heap& heap, double offset, std::int64_t count, const char* name, bool optional = false) {
  if (optional && offset == -1) return nullptr;
  const bool aligned = offset >= 0 && static_cast<std::int64_t>(offset) % 4 == 0 && offset == static_cast<std::int64_t>(offset);
  if (!aligned || count < 0 || static_cast<double>(offset) + 4.0 * count > static_cast<double>(heap.bytes)) {
    throw Napi::RangeError::New(env, std::string(name) + ": " + std::to_string(count) + " floats at byte " +
                                         std::to_string(offset) + " do not fit the " + std::to_string(heap.bytes) + "-byte heap");
  }
  return at(heap.base, static_cast<std::int64_t>(offset));
}

void requirePositive(const Napi::Env& env, const std::vector<double>& dims, const char* what) {
  for (double d : dims) {
    if (!(d >= 0) || d != static_cast<std::int64_t>(d)) throw Napi::RangeError::New(env, std::string(what) + ": dimensions must be whole numbers ≥ 0");
  }
}

template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, F body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    throw Napi::Error::New(info.Env(), std::string("oneDNN: ") + e.what() + " (status " + std::to_string(e.status) + ")");
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "gradfleet native: out of memory");
  }
  return info.Env().Undefined();
}

// conv(heap, [x|dy, w|x|dy, bias, out], [n,h,w,ci,kh,kw,co,oh,ow,sh,sw,dh,dw,top,left,bottom,right], relu)
ConvShape convShapeOf(const Napi::CallbackInfo& info) {
  auto d = numbers(info, 2, 17, "conv shape");
  requirePositive(info.Env(), d, "conv shape");
  auto i = [&](int k) { return static_cast<std::int64_t>(d[k]); };
  return {i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), i(10), i(11), i(12), i(13), i(14), i(15), i(16)};
}

Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  const ConvShape s = convShapeOf(info);
  auto p = numbers(info, 1, 4, "conv tensors");
  const Napi::Env env = info.Env();
  const float* x = tensorAt(env, heap, p[0], s.n * s.h * s.w * s.ci, "x");
  const float* w = tensorAt(env, heap, p[1], s.kh * s.kw * s.ci * s.co, "filter");
  const float* bias = tensorAt(env, heap, p[2], s.co, "bias", true);
  float* y = tensorAt(env, heap, p[3], s.n * s.oh * s.ow * s.co, "y");
  const bool relu = info[3].ToBoolean();
  return guarded(info, [&] { convForward(s, x, w, bias, y, relu); });
}

Napi::Value ConvBackwardData(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  const ConvShape s = convShapeOf(info);
  auto p = numbers(info, 1, 3, "conv tensors");
  const Napi::Env env = info.Env();
  const float* dy = tensorAt(env, heap, p[0], s.n * s.oh * s.ow * s.co, "dy");
  const float* w = tensorAt(env, heap, p[1], s.kh * s.kw * s.ci * s.co, "filter");
  float* dx = tensorAt(env, heap, p[2], s.n * s.h * s.w * s.ci, "dx");
  return guarded(info, [&] { convBackwardData(s, dy, w, dx); });
}

Napi::Value ConvBackwardWeights(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  const ConvShape s = convShapeOf(info);
  auto p = numbers(info, 1, 3, "conv tensors");
  const Napi::Env env = info.Env();
  const float* x = tensorAt(env, heap, p[0], s.n * s.h * s.w * s.ci, "x");
  const float* dy = tensorAt(env, heap, p[1], s.n * s.oh * s.ow * s.co, "dy");
  float* dw = tensorAt(env, heap, p[2], s.kh * s.kw * s.ci * s.co, "dw");
  return guarded(info, [&] { convBackwardWeights(s, x, dy, dw); });
}

// matMul(heap, [a, b, bias, c], [batchA, batchB, m, k, n], [transposeA, transposeB, relu])
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  auto p = numbers(info, 1, 4, "matMul tensors");
  auto d = numbers(info, 2, 5, "matMul shape");
  auto f = numbers(info, 3, 3, "matMul flags");
  const Napi::Env env = info.Env();
  requirePositive(env, d, "matMul shape");
  MatMulShape s{static_cast<std::int64_t>(d[0]), static_cast<std::int64_t>(d[1]), static_cast<std::int64_t>(d[2]),
                static_cast<std::int64_t>(d[3]), static_cast<std::int64_t>(d[4]), f[0] != 0, f[1] != 0};
  if (s.batchA != s.batchB && s.batchA != 1 && s.batchB != 1) {
    throw Napi::RangeError::New(env, "matMul: batch sizes " + std::to_string(s.batchA) + " and " + std::to_string(s.batchB) + " do not broadcast");
  }
  const float* a = tensorAt(env, heap, p[0], s.batchA * s.m * s.k, "a");
  const float* b = tensorAt(env, heap, p[1], s.batchB * s.k * s.n, "b");
  const float* bias = tensorAt(env, heap, p[2], s.n, "bias", true);
  float* c = tensorAt(env, heap, p[3], std::max(s.batchA, s.batchB) * s.m * s.n, "c");
  return guarded(info, [&] { matMul(s, a, b, bias, c, f[2] != 0); });
}

// batchNormForward(heap, [x, gamma, beta, y, mean, variance], [rows, channels, epsilon], relu)
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  auto p = numbers(info, 1, 6, "batchNorm tensors");
  auto d = numbers(info, 2, 3, "batchNorm shape");
  const Napi::Env env = info.Env();
  requirePositive(env, {d[0], d[1]}, "batchNorm shape");
  BatchNormShape s{static_cast<std::int64_t>(d[0]), static_cast<std::int64_t>(d[1]), static_cast<float>(d[2]), info[3].ToBoolean()};
  const std::int64_t n = s.rows * s.channels, c = s.channels;
  const float* x = tensorAt(env, heap, p[0], n, "x");
  const float* gamma = tensorAt(env, heap, p[1], c, "gamma");
  const float* beta = tensorAt(env, heap, p[2], c, "beta");
  float* y = tensorAt(env, heap, p[3], n, "y");
  float* mean = tensorAt(env, heap, p[4], c, "mean");
  float* variance = tensorAt(env, heap, p[5], c, "variance");
  return guarded(info, [&] { batchNormForward(s, x, gamma, beta, y, mean, variance); });
}

// batchNormBackward(heap, [dy, x, y, gamma, mean, variance, dx, dGamma, dBeta], [rows, channels, epsilon], relu)
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  auto p = numbers(info, 1, 9, "batchNormGrad tensors");
  auto d = numbers(info, 2, 3, "batchNormGrad shape");
  const Napi::Env env = info.Env();
  requirePositive(env, {d[0], d[1]}, "batchNormGrad shape");
  BatchNormShape s{static_cast<std::int64_t>(d[0]), static_cast<std::int64_t>(d[1]), static_cast<float>(d[2]), info[3].ToBoolean()};
  const std::int64_t n = s.rows * s.channels, c = s.channels;
  const float* dy = tensorAt(env, heap, p[0], n, "dy");
  const float* x = tensorAt(env, heap, p[1], n, "x");
  const float* y = tensorAt(env, heap, p[2], n, "y");
  const float* gamma = tensorAt(env, heap, p[3], c, "gamma");
  const float* mean = tensorAt(env, heap, p[4], c, "mean");
  const float* variance = tensorAt(env, heap, p[5], c, "variance");
  float* dx = tensorAt(env, heap, p[6], n, "dx");
  float* dGamma = tensorAt(env, heap, p[7], c, "dGamma");
  float* dBeta = tensorAt(env, heap, p[8], c, "dBeta");
  return guarded(info, [&] { batchNormBackward(s, dy, x, y, gamma, mean, variance, dx, dGamma, dBeta); });
}

// maxPool*(heap, [x, y] | [x, dy, dx], [n, h, w, c, kh, kw, oh, ow, sh, sw, top, left])
PoolShape poolShapeOf(const Napi::CallbackInfo& info) {
  auto d = numbers(info, 2, 12, "pool shape");
  requirePositive(info.Env(), d, "pool shape");
  auto i = [&](int k) { return static_cast<std::int64_t>(d[k]); };
  return {i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), i(10), i(11)};
}

Napi::Value MaxPoolForward(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  const PoolShape s = poolShapeOf(info);
  auto p = numbers(info, 1, 2, "pool tensors");
  const Napi::Env env = info.Env();
  const float* x = tensorAt(env, heap, p[0], s.n * s.h * s.w * s.c, "x");
  float* y = tensorAt(env, heap, p[1], s.n * s.oh * s.ow * s.c, "y");
  return guarded(info, [&] { maxPoolForward(s, x, y); });
}

Napi::Value MaxPoolBackward(const Napi::CallbackInfo& info) {
  const Heap heap = heapOf(info);
  const PoolShape s = poolShapeOf(info);
  auto p = numbers(info, 1, 3, "pool tensors");
  const Napi::Env env = info.Env();
  const float* x = tensorAt(env, heap, p[0], s.n * s.h * s.w * s.c, "x");
  const float* dy = tensorAt(env, heap, p[1], s.n * s.oh * s.ow * s.c, "dy");
  float* dx = tensorAt(env, heap, p[2], s.n * s.h * s.w * s.c, "dx");
  return guarded(info, [&] { maxPoolBackward(s, x, dy, dx); });
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const double n = info[0].ToNumber().DoubleValue();
  if (!(n >= 1) || n != static_cast<int>(n)) throw Napi::RangeError::New(info.Env(), "threads must be a whole number ≥ 1");
  omp_set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dnnl_version_t* v = dnnl_version();
  Napi::Object out = Napi::Object::New(env);
  out.Set("onednn", std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
  out.Set("isa", static_cast<double>(static_cast<int>(dnnl::get_effective_cpu_isa())));
  out.Set("threads", omp_get_max_threads());
  out.Set("scratchBytes", static_cast<double>(liveScratchBytes()));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("convForward", Napi::Function::New(env, ConvForward));
  exports.Set("convBackwardData", Napi::Function::New(env, ConvBackwardData));
  exports.Set("convBackwardWeights", Napi::Function::New(env, ConvBackwardWeights));
  exports.Set("matMul", Napi::Function::New(env, MatMul));
  exports.Set("batchNormForward", Napi::Function::New(env, BatchNormForward));
  exports.Set("batchNormBackward", Napi::Function::New(env, BatchNormBackward));
  exports.Set("maxPoolForward", Napi::Function::New(env, MaxPoolForward));
  exports.Set("maxPoolBackward", Napi::Function::New(env, MaxPoolBackward));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("info", Napi::Function::New(env, Info));
  return exports;
}

}  // namespace

NODE_API_MODULE(gradfleet_native, Init)
