// The Node-API surface: each kernel takes the wasm heap's ArrayBuffer, byte offsets of its tensors
// in that heap, and the shape numbers. Offsets and sizes are checked against the heap here, so a
// bad call is a JS exception, never a stray write. The heap is passed at every call because a
// growing wasm memory replaces its buffer.
#include <napi.h>
#include <omp.h>
#include <algorithm>
#include <string>
#include <vector>
#include "batch-norm.h"
#include "conv.h"
#include "dnnl-context.h"
#include "flat-ops.h"
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

struct TensorSpec {
  const char* name;
  std::int64_t count;
  bool optional = false;
};

// Argument 0 is the heap, argument 1 the tensors' byte offsets, in the order of `specs`.
std::vector<float*> tensorsOf(const Napi::CallbackInfo& info, const std::vector<TensorSpec>& specs) {
  const Heap heap = heapOf(info);
  auto offsets = numbers(info, 1, specs.size(), "tensor offsets");
  std::vector<float*> out;
  for (std::size_t i = 0; i < specs.size(); i++) out.push_back(tensorAt(info.Env(), heap, offsets[i], specs[i].count, specs[i].name, specs[i].optional));
  return out;
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

// conv*(heap, [x|dy, w|x|dy, bias, out], [n,h,w,ci,kh,kw,co,oh,ow,sh,sw,dh,dw,top,left,bottom,right], relu)
ConvShape convShapeOf(const Napi::CallbackInfo& info) {
  auto d = numbers(info, 2, 17, "conv shape");
  requirePositive(info.Env(), d, "conv shape");
  auto i = [&](int k) { return static_cast<std::int64_t>(d[k]); };
  return {i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), i(10), i(11), i(12), i(13), i(14), i(15), i(16)};
}

std::int64_t inputSize(const ConvShape& s) { return s.n * s.h * s.w * s.ci; }
std::int64_t filterSize(const ConvShape& s) { return s.kh * s.kw * s.ci * s.co; }
std::int64_t outputSize(const ConvShape& s) { return s.n * s.oh * s.ow * s.co; }

Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  const ConvShape s = convShapeOf(info);
  auto t = tensorsOf(info, {{"x", inputSize(s)}, {"filter", filterSize(s)}, {"bias", s.co, true}, {"y", outputSize(s)}});
  const bool relu = info[3].ToBoolean();
  return guarded(info, [&] { convForward(s, t[0], t[1], t[2], t[3], relu); });
}

Napi::Value ConvBackwardData(const Napi::CallbackInfo& info) {
  const ConvShape s = convShapeOf(info);
  auto t = tensorsOf(info, {{"dy", outputSize(s)}, {"filter", filterSize(s)}, {"dx", inputSize(s)}});
  return guarded(info, [&] { convBackwardData(s, t[0], t[1], t[2]); });
}

Napi::Value ConvBackwardWeights(const Napi::CallbackInfo& info) {
  const ConvShape s = convShapeOf(info);
  auto t = tensorsOf(info, {{"x", inputSize(s)}, {"dy", outputSize(s)}, {"dw", filterSize(s)}});
  return guarded(info, [&] { convBackwardWeights(s, t[0], t[1], t[2]); });
}

// matMul(heap, [a, b, bias, c], [batchA, batchB, m, k, n], [transposeA, transposeB, relu])
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  auto d = numbers(info, 2, 5, "matMul shape");
  auto f = numbers(info, 3, 3, "matMul flags");
  const Napi::Env env = info.Env();
  requirePositive(env, d, "matMul shape");
  MatMulShape s{static_cast<std::int64_t>(d[0]), static_cast<std::int64_t>(d[1]), static_cast<std::int64_t>(d[2]),
                static_cast<std::int64_t>(d[3]), static_cast<std::int64_t>(d[4]), f[0] != 0, f[1] != 0};
  if (s.batchA != s.batchB && s.batchA != 1 && s.batchB != 1) {
    throw Napi::RangeError::New(env, "matMul: batch sizes " + std::to_string(s.batchA) + " and " + std::to_string(s.batchB) + " do not broadcast");
  }
  auto t = tensorsOf(info, {{"a", s.batchA * s.m * s.k}, {"b", s.batchB * s.k * s.n}, {"bias", s.n, true},
                            {"c", std::max(s.batchA, s.batchB) * s.m * s.n}});
  return guarded(info, [&] { matMul(s, t[0], t[1], t[2], t[3], f[2] != 0); });
}

// batchNorm*(heap, tensors, [rows, channels, epsilon], relu)
BatchNormShape batchNormShapeOf(const Napi::CallbackInfo& info) {
  auto d = numbers(info, 2, 3, "batchNorm shape");
  requirePositive(info.Env(), {d[0], d[1]}, "batchNorm shape");
  return {static_cast<std::int64_t>(d[0]), static_cast<std::int64_t>(d[1]), static_cast<float>(d[2]), info[3].ToBoolean()};
}

// tensors: [x, gamma, beta, y, mean, variance]
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  const BatchNormShape s = batchNormShapeOf(info);
  const std::int64_t n = s.rows * s.channels, c = s.channels;
  auto t = tensorsOf(info, {{"x", n}, {"gamma", c}, {"beta", c}, {"y", n}, {"mean", c}, {"variance", c}});
  return guarded(info, [&] { batchNormForward(s, t[0], t[1], t[2], t[3], t[4], t[5]); });
}

// tensors: [dy, x, y, gamma, mean, variance, dx, dGamma, dBeta]
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  const BatchNormShape s = batchNormShapeOf(info);
  const std::int64_t n = s.rows * s.channels, c = s.channels;
  auto t = tensorsOf(info, {{"dy", n}, {"x", n}, {"y", n}, {"gamma", c}, {"mean", c}, {"variance", c}, {"dx", n}, {"dGamma", c}, {"dBeta", c}});
  return guarded(info, [&] { batchNormBackward(s, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]); });
}

// tensors: [x, mean, variance, offset, scale, y]
Napi::Value BatchNormInference(const Napi::CallbackInfo& info) {
  const BatchNormShape s = batchNormShapeOf(info);
  const std::int64_t n = s.rows * s.channels, c = s.channels;
  auto t = tensorsOf(info, {{"x", n}, {"mean", c}, {"variance", c}, {"offset", c}, {"scale", c}, {"y", n}});
  return guarded(info, [&] { batchNormInference(s, t[0], t[1], t[2], t[3], t[4], t[5]); });
}

// maxPool*(heap, [x, y] | [x, dy, dx], [n, h, w, c, kh, kw, oh, ow, sh, sw, top, left])
PoolShape poolShapeOf(const Napi::CallbackInfo& info) {
  auto d = numbers(info, 2, 12, "pool shape");
  requirePositive(info.Env(), d, "pool shape");
  auto i = [&](int k) { return static_cast<std::int64_t>(d[k]); };
  return {i(0), i(1), i(2), i(3), i(4), i(5), i(6), i(7), i(8), i(9), i(10), i(11)};
}

Napi::Value MaxPoolForward(const Napi::CallbackInfo& info) {
  const PoolShape s = poolShapeOf(info);
  auto t = tensorsOf(info, {{"x", s.n * s.h * s.w * s.c}, {"y", s.n * s.oh * s.ow * s.c}});
  return guarded(info, [&] { maxPoolForward(s, t[0], t[1]); });
}

Napi::Value MaxPoolBackward(const Napi::CallbackInfo& info) {
  const PoolShape s = poolShapeOf(info);
  auto t = tensorsOf(info, {{"x", s.n * s.h * s.w * s.c}, {"dy", s.n * s.oh * s.ow * s.c}, {"dx", s.n * s.h * s.w * s.c}});
  return guarded(info, [&] { maxPoolBackward(s, t[0], t[1], t[2]); });
}

// Flat buffers (flat-ops.h) travel as Float32Arrays of their own, not as heap offsets: the
// coordinator's and shards' buffers are plain JS memory.
Napi::Float32Array floatsArg(const Napi::CallbackInfo& info, std::size_t index, const char* name) {
  if (!info[index].IsTypedArray() || info[index].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Float32Array");
  }
  return info[index].As<Napi::Float32Array>();
}

double numberArg(const Napi::CallbackInfo& info, std::size_t index, const char* name) {
  if (!info[index].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  return info[index].As<Napi::Number>().DoubleValue();
}

void requireSameLength(const Napi::CallbackInfo& info, const std::vector<Napi::Float32Array>& arrays) {
  for (const auto& a : arrays) {
    if (a.ElementLength() != arrays[0].ElementLength()) {
      throw Napi::RangeError::New(info.Env(), "buffers differ in length (" + std::to_string(arrays[0].ElementLength()) + " vs " +
                                                  std::to_string(a.ElementLength()) + ")");
    }
  }
}

// scaleInPlace(a, k), divideInPlace(a, d)
Napi::Value ScaleInPlace(const Napi::CallbackInfo& info) {
  auto a = floatsArg(info, 0, "a");
  scaleInPlace(a.Data(), static_cast<std::int64_t>(a.ElementLength()), static_cast<float>(numberArg(info, 1, "k")));
  return info.Env().Undefined();
}

Napi::Value DivideInPlace(const Napi::CallbackInfo& info) {
  auto a = floatsArg(info, 0, "a");
  divideInPlace(a.Data(), static_cast<std::int64_t>(a.ElementLength()), static_cast<float>(numberArg(info, 1, "d")));
  return info.Env().Undefined();
}

// addInto(a, b): a += b
Napi::Value AddInto(const Napi::CallbackInfo& info) {
  auto a = floatsArg(info, 0, "a"), b = floatsArg(info, 1, "b");
  requireSameLength(info, {a, b});
  addInto(a.Data(), b.Data(), static_cast<std::int64_t>(a.ElementLength()));
  return info.Env().Undefined();
}

// firstOutside(a, limit) → index or −1
Napi::Value FirstOutside(const Napi::CallbackInfo& info) {
  auto a = floatsArg(info, 0, "a");
  const auto i = firstOutside(a.Data(), static_cast<std::int64_t>(a.ElementLength()), numberArg(info, 1, "limit"));
  return Napi::Number::New(info.Env(), static_cast<double>(i));
}

// adamUpdate(w, g, m, v, [beta1, beta2, epsilon, stepSize])
Napi::Value AdamUpdate(const Napi::CallbackInfo& info) {
  auto w = floatsArg(info, 0, "w"), g = floatsArg(info, 1, "g"), m = floatsArg(info, 2, "m"), v = floatsArg(info, 3, "v");
  requireSameLength(info, {w, g, m, v});
  auto s = numbers(info, 4, 4, "adam scalars");
  adamUpdate(w.Data(), g.Data(), m.Data(), v.Data(), static_cast<std::int64_t>(w.ElementLength()), {s[0], s[1], s[2], s[3]});
  return info.Env().Undefined();
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
  exports.Set("batchNormInference", Napi::Function::New(env, BatchNormInference));
  exports.Set("maxPoolForward", Napi::Function::New(env, MaxPoolForward));
  exports.Set("maxPoolBackward", Napi::Function::New(env, MaxPoolBackward));
  exports.Set("scaleInPlace", Napi::Function::New(env, ScaleInPlace));
  exports.Set("divideInPlace", Napi::Function::New(env, DivideInPlace));
  exports.Set("addInto", Napi::Function::New(env, AddInto));
  exports.Set("firstOutside", Napi::Function::New(env, FirstOutside));
  exports.Set("adamUpdate", Napi::Function::New(env, AdamUpdate));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("info", Napi::Function::New(env, Info));
  return exports;
}

}  // namespace

NODE_API_MODULE(gradfleet_native, Init)
