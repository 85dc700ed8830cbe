// An inference session over one ONNX graph: creation, introspection and (batched) runs on CPU tensors.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "attribfast/runtime.h"

namespace attribfast {

struct SessionConfig {
  int graph_optimization_level = ort::kEnableAll;  // 0, 1, 2 or 99, as in ORT
  int intra_op_threads = 0;                         // 0: ORT's default (one per physical core)
  std::string provider = "cpu";                     // "cpu" or "cuda"
  int device_id = 0;
  // Route runs through an IoBinding; always on for CUDA, optional on CPU (to test that path).
  bool use_io_binding = false;
  // When the requested provider cannot be used: run on CPU and record a warning, or throw.
  bool allow_fallback = true;
  // Let idle intra-op threads spin for new work (ORT's default). Sessions that run only now and
  // then should not spin: on few cores their spinning threads slow the sessions doing the work.
  bool allow_spinning = true;
  // TF32 matrix products on CUDA: faster, but only ~1e-3 relative, so off unless asked for (an
  // fp32 attribution should match the CPU's to 1e-4).
  bool allow_tf32 = false;
};

struct TensorInfo {
  std::string name;
  int element_type = 0;
  std::vector<int64_t> shape;                // -1 where the dimension is not fixed
  std::vector<std::string> symbolic_shape;   // the dimension's name where it has one, else ""
};

// A borrowed, contiguous host tensor given to a run. pinned: the data lives in the session's
// page-locked staging memory (HostBuffer), which a CUDA run copies to the device by one DMA.
struct TensorView {
  int element_type = 0;
  const void* data = nullptr;
  std::vector<int64_t> shape;
  bool pinned = false;
};

// A run output; owns the ORT value that holds its data.
class OutputTensor {
 public:
  OutputTensor(const Runtime& rt, ort::Value* value);
  int element_type() const { return element_type_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const void* data() const { return data_; }
  size_t element_count() const;
  size_t byte_size() const;

 private:
  OrtPtr<ort::Value> value_;
  int element_type_ = 0;
  std::vector<int64_t> shape_;
  void* data_ = nullptr;
};

// Cancellation for runs in flight. cancel() may be called from any thread; it sets ORT's terminate
// flag (the running batch stops inside ORT) and makes the next batch boundary throw CancelledError.
class RunControl {
 public:
  explicit RunControl(const Runtime& rt);
  void cancel();
  bool cancelled() const { return cancelled_.load(); }
  void throw_if_cancelled() const;
  const ort::RunOptions* options() const { return options_.get(); }

 private:
  const Runtime* rt_;
  OrtPtr<ort::RunOptions> options_;
  std::atomic<bool> cancelled_{false};
};

size_t element_size(int element_type);

using NamedTensor = std::pair<std::string, TensorView>;
// Called at batch boundaries with (rows done, rows in all).
using ProgressFn = std::function<void(int64_t, int64_t)>;

class Session {
 public:
  Session(const Runtime& rt, const std::string& path, const SessionConfig& config);
  Session(const Runtime& rt, const void* model_bytes, size_t size, const SessionConfig& config);

  const std::vector<TensorInfo>& inputs() const { return inputs_; }
  const std::vector<TensorInfo>& outputs() const { return outputs_; }
  const TensorInfo* find_input(const std::string& name) const;
  const TensorInfo* find_output(const std::string& name) const;
  // The provider the session runs on, after any fallback.
  const std::string& provider() const { return provider_; }
  // Non-fatal events during creation (e.g. a fallback to CPU), for the caller to report.
  const std::vector<std::string>& warnings() const { return warnings_; }
  const Runtime& runtime() const { return *rt_; }
  int device_id() const { return device_id_; }
  // The allocator of page-locked host memory of a CUDA session (nullptr on CPU, or when ORT has none).
  ort::Allocator* pinned_allocator() const { return pinned_allocator_.get(); }
  // Free and total bytes of the session's GPU; false on CPU or when the CUDA runtime cannot say.
  bool device_memory(size_t* free_bytes, size_t* total_bytes) const;

  // Runs once. Thread-safe: several threads may run the same session at the same time.
  std::vector<OutputTensor> run(const std::vector<NamedTensor>& inputs,
                                const std::vector<std::string>& output_names,
                                const RunControl* control = nullptr) const;

  // Runs inputs that share a leading batch dimension in slices of batch_size rows and concatenates
  // the outputs along that dimension (outputs must be batch-major too).
  struct HostOutput {
    int element_type = 0;
    std::vector<int64_t> shape;
    std::vector<unsigned char> bytes;
  };
  std::vector<HostOutput> run_batched(const std::vector<NamedTensor>& inputs,
                                      const std::vector<std::string>& output_names, int64_t batch_size,
                                      const RunControl* control, const ProgressFn& progress) const;

 private:
  void create(const void* bytes, size_t size, const std::string* path, const SessionConfig& config);
  void configure_provider(ort::SessionOptions* options, const SessionConfig& config);
  void introspect();
  void validate(const std::vector<NamedTensor>& inputs, const std::vector<std::string>& output_names) const;
  std::vector<OutputTensor> run_with_binding(const std::vector<OrtPtr<ort::Value>>& values,
                                             const std::vector<const char*>& input_names,
                                             const std::vector<const char*>& output_names,
                                             const RunControl* control) const;

  const Runtime* rt_;
  OrtPtr<ort::Session> session_;
  std::vector<TensorInfo> inputs_;
  std::vector<TensorInfo> outputs_;
  std::string provider_ = "cpu";
  int device_id_ = 0;
  bool use_io_binding_ = false;
  std::vector<std::string> warnings_;
  OrtPtr<ort::MemoryInfo> pinned_memory_;
  OrtPtr<ort::Allocator> pinned_allocator_;
};

// A growable staging buffer for run inputs. For a CUDA session it is pinned memory from ORT's own
// pinned allocator, so every batch reaches the device by one DMA copy; it only grows, so a sweep
// allocates a handful of times rather than once per batch. Elsewhere it is plain host memory.
class HostBuffer {
 public:
  explicit HostBuffer(const Session& session) : session_(&session) {}
  ~HostBuffer();
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&&) = delete;

  // At least `bytes` of storage (contents are not kept when it grows).
  void* reserve(size_t bytes);
  template <typename T>
  T* get(size_t count) { return static_cast<T*>(reserve(count * sizeof(T))); }
  bool pinned() const { return pinned_data_ != nullptr; }

 private:
  void release();
  const Session* session_;
  void* pinned_data_ = nullptr;
  size_t capacity_ = 0;
  std::vector<unsigned char> plain_;
};

}  // namespace attribfast
