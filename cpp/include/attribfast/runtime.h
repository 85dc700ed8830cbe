// The process-wide ONNX Runtime instance of the core: the dlopen'ed library, its API table and one Env.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "attribfast/errors.h"
#include "attribfast/ort_api.h"

namespace attribfast {

class Runtime {
 public:
  // Loads the library once per process. Asking again for the same path returns the same runtime;
  // another path is refused, since two ORT copies under one handle table would be ambiguous.
  static Runtime& load(const std::string& library_path);
  // The loaded runtime, or LibraryError when load() has not succeeded yet.
  static Runtime& get();

  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const ort::Api& api() const { return api_; }
  ort::Env* env() const { return env_; }
  ort::Allocator* allocator() const { return allocator_; }
  const ort::MemoryInfo* cpu_memory() const { return cpu_memory_; }
  const std::string& version() const { return version_; }
  const std::string& library_path() const { return library_path_; }
  uint32_t api_version() const { return ort::kApiVersion; }

  // What the library was built with; CUDA may be listed where it cannot load.
  std::vector<std::string> available_providers() const;
  // Whether a session can really be created with the provider (tried on a one-node model).
  bool provider_usable(const std::string& provider, int device_id, std::string* why) const;

  void check(ort::Status* status, Phase phase, const std::string& context) const {
    check_status(api_, status, phase, context);
  }

 private:
  Runtime(const std::string& library_path, void* handle, const ort::ApiBase* base);

  std::string library_path_;
  std::string version_;
  void* handle_ = nullptr;
  ort::Api api_;
  ort::Env* env_ = nullptr;
  ort::Allocator* allocator_ = nullptr;
  ort::MemoryInfo* cpu_memory_ = nullptr;
};

// Free and total memory of a CUDA device, asked of the CUDA runtime that ORT's CUDA provider
// loaded (libcudart, dlopen'ed; the core never links CUDA). False where no CUDA runtime answers.
bool cuda_memory_info(int device_id, size_t* free_bytes, size_t* total_bytes);

// A serialized one-node model (y = Relu(x), float[1]): probes providers and smoke-tests the runtime.
extern const unsigned char kProbeModel[];
extern const size_t kProbeModelSize;

// Owning pointer for ORT objects, released through the runtime's API table.
template <typename T>
struct OrtDeleter {
  const ort::Api* api = nullptr;
  void operator()(T* p) const;
};
template <typename T>
using OrtPtr = std::unique_ptr<T, OrtDeleter<T>>;

template <typename T>
OrtPtr<T> own(const Runtime& rt, T* p) {
  return OrtPtr<T>(p, OrtDeleter<T>{&rt.api()});
}

}  // namespace attribfast
