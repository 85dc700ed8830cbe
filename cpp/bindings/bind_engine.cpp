// Runtime and Session: loading ORT, introspection and plain (batched) runs.
#include <pybind11/stl.h>

#include <cstring>
#include <optional>

#include "common.h"

namespace attribfast::bindings {

int element_type_of(const py::dtype& dtype) {
  const char kind = dtype.kind();
  const auto size = dtype.itemsize();
  if (kind == 'f' && size == 4) return ort::kFloat32;
  if (kind == 'f' && size == 8) return ort::kFloat64;
  if (kind == 'f' && size == 2) return ort::kFloat16;
  if (kind == 'i' && size == 8) return ort::kInt64;
  if (kind == 'i' && size == 4) return ort::kInt32;
  if (kind == 'i' && size == 2) return ort::kInt16;
  if (kind == 'i' && size == 1) return ort::kInt8;
  if (kind == 'u' && size == 1) return ort::kUint8;
  if (kind == 'u' && size == 2) return ort::kUint16;
  if (kind == 'u' && size == 4) return ort::kUint32;
  if (kind == 'u' && size == 8) return ort::kUint64;
  if (kind == 'b') return ort::kBool;
  throw InvalidInputError("unsupported numpy dtype " + std::string(py::str(dtype)));
}

py::dtype dtype_of(int element_type) {
  switch (element_type) {
    case ort::kFloat32: return py::dtype::of<float>();
    case ort::kFloat64: return py::dtype::of<double>();
    case ort::kFloat16: return py::dtype("float16");
    case ort::kInt64: return py::dtype::of<int64_t>();
    case ort::kInt32: return py::dtype::of<int32_t>();
    case ort::kInt16: return py::dtype::of<int16_t>();
    case ort::kInt8: return py::dtype::of<int8_t>();
    case ort::kUint8: return py::dtype::of<uint8_t>();
    case ort::kUint16: return py::dtype::of<uint16_t>();
    case ort::kUint32: return py::dtype::of<uint32_t>();
    case ort::kUint64: return py::dtype::of<uint64_t>();
    case ort::kBool: return py::dtype::of<bool>();
    default: throw RuntimeBackendError("the model returned an unsupported element type " + std::to_string(element_type));
  }
}

TensorView view_of(const py::array& array, py::array* keep) {
  *keep = py::array::ensure(array, py::array::c_style);
  if (!*keep) throw InvalidInputError("expected an array");
  TensorView view;
  view.element_type = element_type_of(keep->dtype());
  view.data = keep->data();
  view.shape.assign(keep->shape(), keep->shape() + keep->ndim());
  return view;
}

py::array to_numpy(int element_type, const std::vector<int64_t>& shape, const void* data) {
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  py::array out(dtype_of(element_type), dims);
  std::memcpy(out.mutable_data(), data, static_cast<size_t>(out.nbytes()));
  return out;
}

namespace {

// Ints of the session options: ORT takes them as C int.
constexpr int64_t kMaxDeviceId = 1 << 16;
constexpr int64_t kMaxThreads = 1 << 16;

py::dict describe(const TensorInfo& info) {
  py::dict d;
  d["name"] = info.name;
  d["dtype"] = dtype_of(info.element_type);
  py::list shape;
  for (size_t i = 0; i < info.shape.size(); ++i) {
    if (info.shape[i] >= 0) shape.append(info.shape[i]);
    else if (!info.symbolic_shape[i].empty()) shape.append(info.symbolic_shape[i]);
    else shape.append(py::none());
  }
  d["shape"] = shape;
  return d;
}

struct Inputs {
  std::vector<NamedTensor> tensors;
  std::vector<py::array> keep;
};

Inputs convert_inputs(const py::dict& feeds) {
  Inputs inputs;
  inputs.keep.reserve(feeds.size());
  for (auto item : feeds) {
    py::array array = py::array::ensure(item.second);
    if (!array) throw InvalidInputError("input '" + py::cast<std::string>(item.first) + "' is not array-like");
    inputs.keep.emplace_back();
    TensorView view = view_of(array, &inputs.keep.back());
    inputs.tensors.emplace_back(py::cast<std::string>(item.first), view);
  }
  return inputs;
}

std::vector<std::string> output_names_or_all(const Session& session, const std::optional<std::vector<std::string>>& names) {
  if (names) return *names;
  std::vector<std::string> all;
  for (const auto& info : session.outputs()) all.push_back(info.name);
  return all;
}

}  // namespace

void bind_engine(py::module_& m) {
  m.def("load_runtime", [](const std::string& path) {
    Runtime& rt = Runtime::load(path);
    return py::make_tuple(rt.version(), rt.library_path(), rt.api_version());
  }, py::arg("library_path"), "Load libonnxruntime once per process; returns (version, path, api version).");
  m.attr("PROBE_MODEL") = py::bytes(reinterpret_cast<const char*>(kProbeModel), kProbeModelSize);
  m.def("available_providers", [] { return Runtime::get().available_providers(); });
  m.def("probe_provider", [](const std::string& provider, const py::object& device) {
    const int device_id = static_cast<int>(int_arg(device, "device_id", 0, kMaxDeviceId));
    std::string why;
    const Runtime& rt = Runtime::get();
    bool ok;
    {
      py::gil_scoped_release release;
      ok = rt.provider_usable(provider, device_id, &why);
    }
    return py::make_tuple(ok, why);
  }, py::arg("provider"), py::arg("device_id") = 0);

  py::class_<Session>(m, "Session")
      .def(py::init([](const py::object& model, const std::string& provider, const py::object& device_id,
                       const py::object& threads, const py::object& optimization_level, bool use_io_binding,
                       bool allow_spinning, bool allow_tf32) {
             SessionConfig config;
             config.provider = provider;
             config.device_id = static_cast<int>(int_arg(device_id, "device_id", 0, kMaxDeviceId));
             config.intra_op_threads = static_cast<int>(int_arg(threads, "threads", 0, kMaxThreads));
             config.graph_optimization_level = static_cast<int>(int_arg(optimization_level, "optimization_level", 0, 99));
             config.use_io_binding = use_io_binding;
             config.allow_spinning = allow_spinning;
             config.allow_tf32 = allow_tf32;
             const Runtime& rt = Runtime::get();
             if (py::isinstance<py::bytes>(model)) {
               std::string bytes = py::cast<std::string>(model);
               py::gil_scoped_release release;
               return new Session(rt, bytes.data(), bytes.size(), config);
             }
             std::string path = py::cast<std::string>(py::str(model));
             py::gil_scoped_release release;
             return new Session(rt, path, config);
           }),
           py::arg("model"), py::arg("provider") = "cpu", py::arg("device_id") = 0, py::arg("threads") = 0,
           py::arg("optimization_level") = 99, py::arg("use_io_binding") = false, py::arg("allow_spinning") = true,
           py::arg("allow_tf32") = false)
      .def_property_readonly("inputs", [](const Session& s) {
        py::list out;
        for (const auto& info : s.inputs()) out.append(describe(info));
        return out;
      })
      .def_property_readonly("outputs", [](const Session& s) {
        py::list out;
        for (const auto& info : s.outputs()) out.append(describe(info));
        return out;
      })
      .def_property_readonly("provider", &Session::provider)
      .def_property_readonly("device_id", &Session::device_id)
      .def_property_readonly("pinned_staging", [](const Session& s) { return s.pinned_allocator() != nullptr; })
      .def("device_memory", [](const Session& s) -> py::object {
        size_t free_bytes = 0, total_bytes = 0;
        if (!s.device_memory(&free_bytes, &total_bytes)) return py::none();
        return py::make_tuple(free_bytes, total_bytes);
      })
      .def_property_readonly("warnings", &Session::warnings)
      .def("run", [](const Session& s, const py::dict& feeds, const std::optional<std::vector<std::string>>& names) {
        Inputs inputs = convert_inputs(feeds);
        const auto output_names = output_names_or_all(s, names);
        auto outputs = run_off_gil(s.runtime(), py::none(), [&](RunControl& control, const ProgressFn&) {
          return s.run(inputs.tensors, output_names, &control);
        });
        py::list result;
        for (const auto& out : outputs) result.append(to_numpy(out.element_type(), out.shape(), out.data()));
        return result;
      }, py::arg("inputs"), py::arg("output_names") = py::none())
      .def("run_batched", [](const Session& s, const py::dict& feeds, const std::optional<std::vector<std::string>>& names,
                             const py::object& batch, const py::object& progress) {
        const int64_t batch_size = int_arg(batch, "batch_size", 1);
        Inputs inputs = convert_inputs(feeds);
        const auto output_names = output_names_or_all(s, names);
        auto outputs = run_off_gil(s.runtime(), progress, [&](RunControl& control, const ProgressFn& report) {
          return s.run_batched(inputs.tensors, output_names, batch_size, &control, report);
        });
        py::list result;
        for (const auto& out : outputs) result.append(to_numpy(out.element_type, out.shape, out.bytes.data()));
        return result;
      }, py::arg("inputs"), py::arg("output_names") = py::none(), py::arg("batch_size") = 32,
         py::arg("progress") = py::none());
}

}  // namespace attribfast::bindings
