// oneDNN 2-D convolutions (NHWC activations, HWIO kernels, float32) as XLA FFI handlers.
//
// Three handlers, one per pass of a convolution layer:
//   ftlab_conv_fwd(x, w) -> y            y = conv(x, w)
//   ftlab_conv_bwd_data(g, w) -> dx      dx = d conv / dx applied to g (shape from the result)
//   ftlab_conv_bwd_weights(x, g) -> dw   dw = d conv / dw applied to g (shape from the result)
// with attributes strides, pad_lo, pad_hi, dilation (two int64 each, XLA's
// convention: dilation 1 = dense). Primitives are created once per
// (pass, shapes, attributes) and cached; executing them is thread-safe
// because each call brings its own scratchpad and weight buffers. Where
// oneDNN prefers a blocked weight layout for a shape, the HWIO kernel (or
// gradient) is reordered into (or out of) it on every call.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;

namespace {

enum class Pass { kForward, kBackwardData, kBackwardWeights };

struct Geometry {
  memory::dims src, weights, dst;  // oneDNN logical dims: NCHW, OIHW, NCHW
  memory::dims strides, dilates, pad_lo, pad_hi;
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The cached primitive of one pass, with the memory descriptors it was built for.
struct Plan {
  dnnl::primitive primitive;
  memory::desc weights;  // the layout the primitive wants for weights / diff_weights
  memory::desc scratchpad;
  bool reorder_weights = false;
};

memory::desc Nhwc(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, tag::nhwc);
}

memory::desc Hwio(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, tag::hwio);
}

memory::desc AnyLayout(const memory::dims& dims) {
  return memory::desc(dims, memory::data_type::f32, tag::any);
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g, dnnl::primitive_attr attr) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Nhwc(g.src), AnyLayout(g.weights), Nhwc(g.dst), g.strides, g.dilates, g.pad_lo, g.pad_hi,
      attr);
}

Plan MakePlan(Pass pass, const Geometry& g) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  Plan plan;
  auto fwd = ForwardDesc(g, attr);
  if (pass == Pass::kForward) {
    plan.primitive = dnnl::convolution_forward(fwd);
    plan.weights = fwd.weights_desc();
    plan.scratchpad = fwd.scratchpad_desc();
  } else if (pass == Pass::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Nhwc(g.src), AnyLayout(g.weights),
        Nhwc(g.dst), g.strides, g.dilates, g.pad_lo, g.pad_hi, fwd, attr);
    plan.primitive = dnnl::convolution_backward_data(pd);
    plan.weights = pd.weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Nhwc(g.src), AnyLayout(g.weights),
        Nhwc(g.dst), g.strides, g.dilates, g.pad_lo, g.pad_hi, fwd, attr);
    plan.primitive = dnnl::convolution_backward_weights(pd);
    plan.weights = pd.diff_weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  }
  plan.reorder_weights = plan.weights != Hwio(g.weights);
  return plan;
}

std::string Key(Pass pass, const Geometry& g) {
  std::string key = std::to_string(static_cast<int>(pass));
  for (const memory::dims* d : {&g.src, &g.weights, &g.dst, &g.strides, &g.dilates, &g.pad_lo,
                                &g.pad_hi}) {
    key += '|';
    for (auto v : *d) key += std::to_string(v) + ',';
  }
  return key;
}

const Plan& CachedPlan(Pass pass, const Geometry& g) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Plan>> cache;
  std::string key = Key(pass, g);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) {
    it = cache.emplace(key, std::make_unique<Plan>(MakePlan(pass, g))).first;
  }
  return *it->second;
}

// A 64-byte aligned scratch buffer owned by one call.
struct Scratch {
  explicit Scratch(size_t bytes) : ptr(bytes ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr) {}
  ~Scratch() { std::free(ptr); }
  void* ptr;
};

template <typename Dims>
memory::dims Nchw(const Dims& nhwc) {
  return {nhwc[0], nhwc[3], nhwc[1], nhwc[2]};
}

template <typename Dims>
memory::dims Oihw(const Dims& hwio) {
  return {hwio[3], hwio[2], hwio[0], hwio[1]};
}

memory::dims Pair(ffi::Span<const int64_t> v, int64_t minus = 0) {
  return {v[0] - minus, v[1] - minus};
}

Geometry MakeGeometry(memory::dims src, memory::dims weights, memory::dims dst,
                      ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
                      ffi::Span<const int64_t> pad_hi, ffi::Span<const int64_t> dilation) {
  // oneDNN counts dilation from 0 (dense), XLA from 1.
  return Geometry{src, weights, dst, Pair(strides), Pair(dilation, 1), Pair(pad_lo), Pair(pad_hi)};
}

ffi::Error CheckAttrs(ffi::Span<const int64_t> strides, ffi::Span<const int64_t> pad_lo,
                      ffi::Span<const int64_t> pad_hi, ffi::Span<const int64_t> dilation) {
  if (strides.size() != 2 || pad_lo.size() != 2 || pad_hi.size() != 2 || dilation.size() != 2) {
    return ffi::Error::InvalidArgument("ftlab oneDNN conv: strides/pad_lo/pad_hi/dilation need 2 values");
  }
  return ffi::Error::Success();
}

// Runs `pass` on user buffers in NHWC/HWIO; `weights` is read (fwd, bwd-data) or written (bwd-weights).
ffi::Error Execute(Pass pass, const Geometry& g, float* src, float* weights, float* dst) {
  try {
    const Plan& plan = CachedPlan(pass, g);
    dnnl::engine& engine = Engine();
    dnnl::stream stream(engine);
    memory user_w(Hwio(g.weights), engine, weights);
    Scratch w_buf(plan.reorder_weights ? plan.weights.get_size() : 0);
    memory w = plan.reorder_weights ? memory(plan.weights, engine, w_buf.ptr) : user_w;
    if (plan.reorder_weights && pass != Pass::kBackwardWeights) {
      dnnl::reorder(user_w, w).execute(stream, user_w, w);
    }
    Scratch pad_buf(plan.scratchpad.get_size());
    memory scratchpad(plan.scratchpad, engine, pad_buf.ptr);
    memory s(Nhwc(g.src), engine, src), d(Nhwc(g.dst), engine, dst);
    if (pass == Pass::kForward) {
      plan.primitive.execute(stream, {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, d},
                                      {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else if (pass == Pass::kBackwardData) {
      plan.primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, s}, {DNNL_ARG_WEIGHTS, w},
                                      {DNNL_ARG_DIFF_DST, d}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
    } else {
      plan.primitive.execute(stream, {{DNNL_ARG_SRC, s}, {DNNL_ARG_DIFF_WEIGHTS, w},
                                      {DNNL_ARG_DIFF_DST, d}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (plan.reorder_weights) dnnl::reorder(w, user_w).execute(stream, w, user_w);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN convolution failed: ") + e.what());
  }
  return ffi::Error::Success();
}

using Buffer4 = ffi::Buffer<ffi::F32, 4>;
using Result4 = ffi::ResultBuffer<ffi::F32, 4>;
using Ints = ffi::Span<const int64_t>;

ffi::Error Forward(Buffer4 x, Buffer4 w, Result4 y, Ints strides, Ints pad_lo, Ints pad_hi,
                   Ints dilation) {
  if (auto e = CheckAttrs(strides, pad_lo, pad_hi, dilation); e.failure()) return e;
  Geometry g = MakeGeometry(Nchw(x.dimensions()), Oihw(w.dimensions()), Nchw(y->dimensions()),
                            strides, pad_lo, pad_hi, dilation);
  return Execute(Pass::kForward, g, x.typed_data(), w.typed_data(), y->typed_data());
}

ffi::Error BackwardData(Buffer4 dy, Buffer4 w, Result4 dx, Ints strides, Ints pad_lo, Ints pad_hi,
                        Ints dilation) {
  if (auto e = CheckAttrs(strides, pad_lo, pad_hi, dilation); e.failure()) return e;
  Geometry g = MakeGeometry(Nchw(dx->dimensions()), Oihw(w.dimensions()), Nchw(dy.dimensions()),
                            strides, pad_lo, pad_hi, dilation);
  return Execute(Pass::kBackwardData, g, dx->typed_data(), w.typed_data(), dy.typed_data());
}

ffi::Error BackwardWeights(Buffer4 x, Buffer4 dy, Result4 dw, Ints strides, Ints pad_lo,
                           Ints pad_hi, Ints dilation) {
  if (auto e = CheckAttrs(strides, pad_lo, pad_hi, dilation); e.failure()) return e;
  Geometry g = MakeGeometry(Nchw(x.dimensions()), Oihw(dw->dimensions()), Nchw(dy.dimensions()),
                            strides, pad_lo, pad_hi, dilation);
  return Execute(Pass::kBackwardWeights, g, x.typed_data(), dw->typed_data(), dy.typed_data());
}

}  // namespace

#define FTLAB_CONV_BINDING                                             \
  ffi::Ffi::Bind().Arg<Buffer4>().Arg<Buffer4>().Ret<Buffer4>()        \
      .Attr<Ints>("strides").Attr<Ints>("pad_lo").Attr<Ints>("pad_hi") \
      .Attr<Ints>("dilation")

// The only exported symbols (the library is built with -fvisibility=hidden).
#pragma GCC visibility push(default)
XLA_FFI_DEFINE_HANDLER_SYMBOL(FtlabConvForward, Forward, FTLAB_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FtlabConvBackwardData, BackwardData, FTLAB_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(FtlabConvBackwardWeights, BackwardWeights, FTLAB_CONV_BINDING);

// Which oneDNN library was loaded (for the one-line log).
extern "C" const char* FtlabOnednnVersion() {
  static std::string text = [] {
    const dnnl_version_t* v = dnnl_version();
    return std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch);
  }();
  return text.c_str();
}
#pragma GCC visibility pop
