#include "attribfast/session.h"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace attribfast {

namespace {

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

const char* element_type_name(int type) {
  switch (type) {
    case ort::kFloat32: return "float32";
    case ort::kFloat64: return "float64";
    case ort::kFloat16: return "float16";
    case ort::kInt64: return "int64";
    case ort::kInt32: return "int32";
    case ort::kInt16: return "int16";
    case ort::kInt8: return "int8";
    case ort::kUint8: return "uint8";
    case ort::kUint16: return "uint16";
    case ort::kUint32: return "uint32";
    case ort::kUint64: return "uint64";
    case ort::kBool: return "bool";
    case ort::kString: return "string";
    default: return "unknown";
  }
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

size_t element_size(int element_type) {
  switch (element_type) {
    case ort::kFloat64: case ort::kInt64: case ort::kUint64: return 8;
    case ort::kFloat32: case ort::kInt32: case ort::kUint32: return 4;
    case ort::kFloat16: case ort::kInt16: case ort::kUint16: return 2;
    case ort::kInt8: case ort::kUint8: case ort::kBool: return 1;
    default: throw InvalidInputError(std::string("unsupported tensor element type ") + element_type_name(element_type));
  }
}

OutputTensor::OutputTensor(const Runtime& rt, ort::Value* value) : value_(own(rt, value)) {
  const ort::Api& api = rt.api();
  ort::TensorTypeAndShapeInfo* raw_info = nullptr;
  rt.check(api.GetTensorTypeAndShape(value, &raw_info), Phase::kRun, "reading an output's shape");
  auto info = own(rt, raw_info);
  ort::ElementType type;
  rt.check(api.GetTensorElementType(info.get(), &type), Phase::kRun, "reading an output's type");
  element_type_ = type;
  size_t rank = 0;
  rt.check(api.GetDimensionsCount(info.get(), &rank), Phase::kRun, "reading an output's rank");
  shape_.resize(rank);
  rt.check(api.GetDimensions(info.get(), shape_.data(), rank), Phase::kRun, "reading an output's shape");
  rt.check(api.GetTensorMutableData(value, &data_), Phase::kRun, "reading an output's data");
}

size_t OutputTensor::element_count() const { return static_cast<size_t>(product(shape_)); }
size_t OutputTensor::byte_size() const { return element_count() * element_size(element_type_); }

RunControl::RunControl(const Runtime& rt) : rt_(&rt) {
  ort::RunOptions* raw = nullptr;
  rt.check(rt.api().CreateRunOptions(&raw), Phase::kSetup, "creating run options");
  options_ = own(rt, raw);
}

void RunControl::cancel() {
  cancelled_.store(true);
  // ORT documents the terminate flag as safe to set from another thread during Run.
  rt_->check(rt_->api().RunOptionsSetTerminate(options_.get()), Phase::kSetup, "cancelling a run");
}

void RunControl::throw_if_cancelled() const {
  if (cancelled_.load()) throw CancelledError("the run was cancelled");
}

Session::Session(const Runtime& rt, const std::string& path, const SessionConfig& config) : rt_(&rt) {
  create(nullptr, 0, &path, config);
}

Session::Session(const Runtime& rt, const void* model_bytes, size_t size, const SessionConfig& config)
    : rt_(&rt) {
  if (model_bytes == nullptr || size == 0) throw ModelLoadError("the model bytes are empty");
  create(model_bytes, size, nullptr, config);
}

void Session::configure_provider(ort::SessionOptions* options, const SessionConfig& config) {
  provider_ = "cpu";
  if (config.provider == "cpu") return;
  if (config.provider != "cuda") {
    throw InvalidInputError("unknown execution provider '" + config.provider + "' (possible: cpu, cuda)");
  }
  const ort::Api& api = rt_->api();
  ort::CUDAProviderOptionsV2* raw = nullptr;
  ort::Status* status = api.CreateCUDAProviderOptions(&raw);
  auto cuda_options = own(*rt_, raw);
  if (status == nullptr) {
    if (config.device_id < 0) throw InvalidInputError("device_id must be >= 0");
    const std::string device = std::to_string(config.device_id);
    // The arena grows by what a run asks for, not by powers of two: attribution batches vary in
    // shape, and each session keeps its own arena, so doubling would strand device memory.
    const char* keys[] = {"device_id", "use_tf32", "arena_extend_strategy"};
    const char* values[] = {device.c_str(), config.allow_tf32 ? "1" : "0", "kSameAsRequested"};
    status = api.UpdateCUDAProviderOptions(cuda_options.get(), keys, values, 3);
    if (status != nullptr) {  // a library without these switches: the device id alone
      api.ReleaseStatus(status);
      status = api.UpdateCUDAProviderOptions(cuda_options.get(), keys, values, 1);
    }
  }
  if (status == nullptr) status = api.SessionOptionsAppendExecutionProvider_CUDA_V2(options, cuda_options.get());
  if (status == nullptr) {
    provider_ = "cuda";
    device_id_ = config.device_id;
    return;
  }
  std::string why = api.GetErrorMessage(status);
  if (!config.allow_fallback) throw_status(api, status, Phase::kSetup, "enabling the CUDA provider");
  api.ReleaseStatus(status);
  warnings_.push_back("CUDA execution provider unavailable, running on CPU: " + why);
}

void Session::create(const void* bytes, size_t size, const std::string* path, const SessionConfig& config) {
  const ort::Api& api = rt_->api();
  ort::SessionOptions* raw_options = nullptr;
  rt_->check(api.CreateSessionOptions(&raw_options), Phase::kSetup, "creating session options");
  auto options = own(*rt_, raw_options);
  const int level = config.graph_optimization_level;
  if (level != ort::kDisableAll && level != ort::kEnableBasic && level != ort::kEnableExtended &&
      level != ort::kEnableAll) {
    throw InvalidInputError("graph optimization level must be 0, 1, 2 or 99, got " + std::to_string(level));
  }
  if (config.intra_op_threads < 0) throw InvalidInputError("intra_op_threads must be >= 0");
  rt_->check(api.SetSessionGraphOptimizationLevel(options.get(), static_cast<ort::GraphOptimizationLevel>(level)),
             Phase::kSetup, "setting the optimization level");
  rt_->check(api.SetIntraOpNumThreads(options.get(), config.intra_op_threads), Phase::kSetup,
             "setting the thread count");
  rt_->check(api.SetSessionLogSeverityLevel(options.get(), ort::kError), Phase::kSetup, "setting the log level");
  rt_->check(api.AddSessionConfigEntry(options.get(), "session.intra_op.allow_spinning", config.allow_spinning ? "1" : "0"),
             Phase::kSetup, "setting thread spinning");
  configure_provider(options.get(), config);
  use_io_binding_ = config.use_io_binding || provider_ == "cuda";

  ort::Session* raw_session = nullptr;
  ort::Status* status = path ? api.CreateSession(rt_->env(), path->c_str(), options.get(), &raw_session)
                             : api.CreateSessionFromArray(rt_->env(), bytes, size, options.get(), &raw_session);
  if (status != nullptr) {
    if (provider_ == "cuda" && config.allow_fallback) {
      // The provider library loaded but the device is unusable (no GPU, driver mismatch): retry on CPU.
      warnings_.push_back(std::string("CUDA session creation failed, running on CPU: ") + api.GetErrorMessage(status));
      api.ReleaseStatus(status);
      SessionConfig cpu = config;
      cpu.provider = "cpu";
      create(bytes, size, path, cpu);  // keeps warnings_: the fallback is reported once
      return;
    }
    throw_status(api, status, Phase::kLoad, path ? "loading model " + *path : std::string("loading model bytes"));
  }
  session_ = own(*rt_, raw_session);
  introspect();
  if (provider_ == "cuda") {
    // Staging memory for inputs; without it (an ORT build with no pinned allocator) inputs stay in
    // plain host memory, which is slower to copy but still correct.
    ort::MemoryInfo* raw_memory = nullptr;
    ort::Allocator* raw_allocator = nullptr;
    ort::Status* pinned = api.CreateMemoryInfo("CudaPinned", ort::kDeviceAllocator, device_id_,
                                               ort::kMemTypeCpuOutput, &raw_memory);
    if (pinned == nullptr) {
      pinned_memory_ = own(*rt_, raw_memory);
      pinned = api.CreateAllocator(session_.get(), pinned_memory_.get(), &raw_allocator);
    }
    if (pinned == nullptr) {
      pinned_allocator_ = own(*rt_, raw_allocator);
    } else {
      api.ReleaseStatus(pinned);
    }
  }
}

bool Session::device_memory(size_t* free_bytes, size_t* total_bytes) const {
  return provider_ == "cuda" && cuda_memory_info(device_id_, free_bytes, total_bytes);
}

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : session_(other.session_), pinned_data_(other.pinned_data_), capacity_(other.capacity_),
      plain_(std::move(other.plain_)) {
  other.pinned_data_ = nullptr;
  other.capacity_ = 0;
}

HostBuffer::~HostBuffer() { release(); }

void HostBuffer::release() {
  if (pinned_data_ != nullptr) {
    session_->runtime().api().AllocatorFree(session_->pinned_allocator(), pinned_data_);
    pinned_data_ = nullptr;
  }
  capacity_ = 0;
}

void* HostBuffer::reserve(size_t bytes) {
  ort::Allocator* allocator = session_->pinned_allocator();
  if (allocator == nullptr) {
    if (plain_.size() < bytes) plain_.resize(bytes);
    return plain_.data();
  }
  if (bytes > capacity_ || pinned_data_ == nullptr) {
    const size_t grown = std::max<size_t>(std::max<size_t>(bytes, 1), capacity_ + capacity_ / 2);
    release();
    void* data = nullptr;
    session_->runtime().check(session_->runtime().api().AllocatorAlloc(allocator, grown, &data), Phase::kRun,
                              "allocating pinned host memory");
    pinned_data_ = data;
    capacity_ = grown;
  }
  return pinned_data_;
}

void Session::introspect() {
  const ort::Api& api = rt_->api();
  auto describe = [&](bool input, size_t index) {
    TensorInfo info;
    char* name = nullptr;
    rt_->check((input ? api.SessionGetInputName : api.SessionGetOutputName)(session_.get(), index, rt_->allocator(), &name),
               Phase::kLoad, "reading a graph name");
    info.name = name;
    rt_->check(api.AllocatorFree(rt_->allocator(), name), Phase::kLoad, "freeing a graph name");
    ort::TypeInfo* raw_type = nullptr;
    rt_->check((input ? api.SessionGetInputTypeInfo : api.SessionGetOutputTypeInfo)(session_.get(), index, &raw_type),
               Phase::kLoad, "reading a graph type");
    auto type_info = own(*rt_, raw_type);
    ort::OnnxType onnx_type;
    rt_->check(api.GetOnnxTypeFromTypeInfo(type_info.get(), &onnx_type), Phase::kLoad, "reading a graph type");
    if (onnx_type != ort::kTypeTensor) {
      throw ModelLoadError("graph " + std::string(input ? "input" : "output") + " '" + info.name +
                           "' is not a tensor; attribfast supports tensor inputs and outputs only");
    }
    const ort::TensorTypeAndShapeInfo* tensor = nullptr;  // owned by type_info
    rt_->check(api.CastTypeInfoToTensorInfo(type_info.get(), &tensor), Phase::kLoad, "reading a tensor type");
    ort::ElementType element_type;
    rt_->check(api.GetTensorElementType(tensor, &element_type), Phase::kLoad, "reading an element type");
    info.element_type = element_type;
    size_t rank = 0;
    rt_->check(api.GetDimensionsCount(tensor, &rank), Phase::kLoad, "reading a rank");
    info.shape.resize(rank);
    rt_->check(api.GetDimensions(tensor, info.shape.data(), rank), Phase::kLoad, "reading a shape");
    std::vector<const char*> symbols(rank, nullptr);
    rt_->check(api.GetSymbolicDimensions(tensor, symbols.data(), rank), Phase::kLoad, "reading symbolic dimensions");
    for (const char* symbol : symbols) info.symbolic_shape.emplace_back(symbol ? symbol : "");
    return info;
  };
  size_t n_inputs = 0, n_outputs = 0;
  rt_->check(api.SessionGetInputCount(session_.get(), &n_inputs), Phase::kLoad, "counting inputs");
  rt_->check(api.SessionGetOutputCount(session_.get(), &n_outputs), Phase::kLoad, "counting outputs");
  for (size_t i = 0; i < n_inputs; ++i) inputs_.push_back(describe(true, i));
  for (size_t i = 0; i < n_outputs; ++i) outputs_.push_back(describe(false, i));
}

const TensorInfo* Session::find_input(const std::string& name) const {
  for (const auto& info : inputs_) if (info.name == name) return &info;
  return nullptr;
}

const TensorInfo* Session::find_output(const std::string& name) const {
  for (const auto& info : outputs_) if (info.name == name) return &info;
  return nullptr;
}

void Session::validate(const std::vector<NamedTensor>& inputs, const std::vector<std::string>& output_names) const {
  auto names_of = [](const std::vector<TensorInfo>& infos) {
    std::string all;
    for (const auto& info : infos) all += (all.empty() ? "" : ", ") + info.name;
    return all;
  };
  for (const auto& [name, view] : inputs) {
    const TensorInfo* info = find_input(name);
    if (info == nullptr) throw InvalidInputError("the model has no input '" + name + "' (inputs: " + names_of(inputs_) + ")");
    if (view.element_type != info->element_type) {
      throw InvalidInputError("input '" + name + "' must be " + element_type_name(info->element_type) + ", got " +
                              element_type_name(view.element_type));
    }
    if (view.shape.size() != info->shape.size()) {
      throw InvalidInputError("input '" + name + "' must have rank " + std::to_string(info->shape.size()) +
                              " (shape " + shape_to_string(info->shape) + "), got shape " + shape_to_string(view.shape));
    }
    for (size_t d = 0; d < view.shape.size(); ++d) {
      if (view.shape[d] < 0 || (info->shape[d] >= 0 && info->shape[d] != view.shape[d])) {
        throw InvalidInputError("input '" + name + "' has shape " + shape_to_string(view.shape) + ", the model expects " +
                                shape_to_string(info->shape));
      }
    }
    if (view.data == nullptr && product(view.shape) > 0) throw InvalidInputError("input '" + name + "' has no data");
  }
  for (const auto& info : inputs_) {
    bool given = std::any_of(inputs.begin(), inputs.end(), [&](const NamedTensor& t) { return t.first == info.name; });
    if (!given) throw InvalidInputError("missing input '" + info.name + "' (inputs: " + names_of(inputs_) + ")");
  }
  for (const auto& name : output_names) {
    if (find_output(name) == nullptr) {
      throw InvalidInputError("the model has no output '" + name + "' (outputs: " + names_of(outputs_) + ")");
    }
  }
}

std::vector<OutputTensor> Session::run(const std::vector<NamedTensor>& inputs, const std::vector<std::string>& output_names,
                                       const RunControl* control) const {
  validate(inputs, output_names);
  if (control) control->throw_if_cancelled();
  const ort::Api& api = rt_->api();
  std::vector<OrtPtr<ort::Value>> values;
  std::vector<const ort::Value*> value_ptrs;
  std::vector<const char*> input_names, out_names;
  for (const auto& [name, view] : inputs) {
    const size_t bytes = static_cast<size_t>(product(view.shape)) * element_size(view.element_type);
    ort::Value* raw = nullptr;
    // ORT only reads inputs; the const_cast is for its C signature.
    const ort::MemoryInfo* memory = view.pinned && pinned_memory_ ? pinned_memory_.get() : rt_->cpu_memory();
    rt_->check(api.CreateTensorWithDataAsOrtValue(memory, const_cast<void*>(view.data), bytes,
                                                  view.shape.data(), view.shape.size(),
                                                  static_cast<ort::ElementType>(view.element_type), &raw),
               Phase::kRun, "wrapping input '" + name + "'");
    values.push_back(own(*rt_, raw));
    value_ptrs.push_back(raw);
    input_names.push_back(name.c_str());
  }
  for (const auto& name : output_names) out_names.push_back(name.c_str());
  if (use_io_binding_) return run_with_binding(values, input_names, out_names, control);

  std::vector<ort::Value*> raw_outputs(out_names.size(), nullptr);
  ort::Status* status = api.Run(session_.get(), control ? control->options() : nullptr, input_names.data(),
                                value_ptrs.data(), value_ptrs.size(), out_names.data(), out_names.size(),
                                raw_outputs.data());
  std::vector<OutputTensor> outputs;
  outputs.reserve(raw_outputs.size());
  if (status != nullptr) {
    for (ort::Value* v : raw_outputs) if (v) api.ReleaseValue(v);
    if (control && control->cancelled()) {
      api.ReleaseStatus(status);
      control->throw_if_cancelled();
    }
    throw_status(api, status, Phase::kRun, "running the model");
  }
  for (ort::Value* v : raw_outputs) outputs.emplace_back(*rt_, v);
  return outputs;
}

std::vector<OutputTensor> Session::run_with_binding(const std::vector<OrtPtr<ort::Value>>& values,
                                                    const std::vector<const char*>& input_names,
                                                    const std::vector<const char*>& output_names,
                                                    const RunControl* control) const {
  const ort::Api& api = rt_->api();
  ort::IoBinding* raw_binding = nullptr;
  rt_->check(api.CreateIoBinding(session_.get(), &raw_binding), Phase::kRun, "creating an IO binding");
  auto binding = own(*rt_, raw_binding);
  for (size_t i = 0; i < values.size(); ++i) {
    rt_->check(api.BindInput(binding.get(), input_names[i], values[i].get()), Phase::kRun, "binding an input");
  }
  // CUDA outputs go to pinned host memory: the device writes them by DMA and the CPU reads them
  // without another copy. On CPU the binding path is kept testable with plain CPU memory.
  ort::MemoryInfo* raw_memory = nullptr;
  if (provider_ == "cuda") {
    rt_->check(api.CreateMemoryInfo("CudaPinned", ort::kDeviceAllocator, device_id_, ort::kMemTypeCpuOutput, &raw_memory),
               Phase::kRun, "describing pinned memory");
  } else {
    rt_->check(api.CreateCpuMemoryInfo(ort::kDeviceAllocator, ort::kMemTypeDefault, &raw_memory), Phase::kRun,
               "describing CPU memory");
  }
  auto memory = own(*rt_, raw_memory);
  for (const char* name : output_names) {
    rt_->check(api.BindOutputToDevice(binding.get(), name, memory.get()), Phase::kRun, "binding an output");
  }
  ort::Status* status = api.RunWithBinding(session_.get(), control ? control->options() : nullptr, binding.get());
  if (status != nullptr) {
    if (control && control->cancelled()) {
      api.ReleaseStatus(status);
      control->throw_if_cancelled();
    }
    throw_status(api, status, Phase::kRun, "running the model");
  }
  rt_->check(api.SynchronizeBoundOutputs(binding.get()), Phase::kRun, "synchronizing outputs");
  ort::Value** raw_outputs = nullptr;
  size_t count = 0;
  rt_->check(api.GetBoundOutputValues(binding.get(), rt_->allocator(), &raw_outputs, &count), Phase::kRun,
             "reading bound outputs");
  std::vector<OutputTensor> outputs;
  for (size_t i = 0; i < count; ++i) outputs.emplace_back(*rt_, raw_outputs[i]);
  if (raw_outputs) rt_->check(api.AllocatorFree(rt_->allocator(), raw_outputs), Phase::kRun, "freeing the output list");
  return outputs;
}

std::vector<Session::HostOutput> Session::run_batched(const std::vector<NamedTensor>& inputs,
                                                      const std::vector<std::string>& output_names, int64_t batch_size,
                                                      const RunControl* control, const ProgressFn& progress) const {
  if (inputs.empty()) throw InvalidInputError("run_batched needs at least one input");
  if (batch_size <= 0) throw InvalidInputError("batch_size must be positive");
  int64_t rows = -1;
  for (const auto& [name, view] : inputs) {
    if (view.shape.empty()) throw InvalidInputError("input '" + name + "' has no batch dimension");
    if (rows >= 0 && view.shape[0] != rows) {
      throw InvalidInputError("inputs disagree on the batch size: '" + name + "' has " + std::to_string(view.shape[0]) +
                              " rows, others " + std::to_string(rows));
    }
    rows = view.shape[0];
  }
  validate(inputs, output_names);
  std::vector<HostOutput> result(output_names.size());
  for (int64_t start = 0; start < rows || (rows == 0 && start == 0); start += batch_size) {
    if (control) control->throw_if_cancelled();
    const int64_t n = std::min(batch_size, rows - start);
    std::vector<NamedTensor> slice;
    for (const auto& [name, view] : inputs) {
      TensorView part = view;
      part.shape[0] = n;
      const size_t row_bytes = static_cast<size_t>(product(view.shape) / std::max<int64_t>(rows, 1)) *
                               element_size(view.element_type);
      part.data = static_cast<const unsigned char*>(view.data) + static_cast<size_t>(start) * row_bytes;
      slice.emplace_back(name, part);
    }
    auto outputs = run(slice, output_names, control);
    for (size_t k = 0; k < outputs.size(); ++k) {
      const auto& out = outputs[k];
      if (out.shape().empty() || out.shape()[0] != n) {
        throw RuntimeBackendError("output '" + output_names[k] + "' is not batch-major (shape " +
                                  shape_to_string(out.shape()) + " for " + std::to_string(n) + " rows)");
      }
      auto& dest = result[k];
      if (dest.shape.empty()) {
        dest.element_type = out.element_type();
        dest.shape = out.shape();
        dest.shape[0] = 0;
        dest.bytes.reserve(out.byte_size() / std::max<int64_t>(n, 1) * rows);
      }
      const auto* data = static_cast<const unsigned char*>(out.data());
      dest.bytes.insert(dest.bytes.end(), data, data + out.byte_size());
      dest.shape[0] += n;
    }
    if (progress) progress(start + n, rows);
    if (rows == 0) break;
  }
  return result;
}

}  // namespace attribfast
