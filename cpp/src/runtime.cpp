#include "attribfast/runtime.h"

#include <dlfcn.h>

#include <mutex>

#include "attribfast/session.h"

namespace attribfast {

template <> void OrtDeleter<ort::Value>::operator()(ort::Value* p) const { if (p) api->ReleaseValue(p); }
template <> void OrtDeleter<ort::Session>::operator()(ort::Session* p) const { if (p) api->ReleaseSession(p); }
template <> void OrtDeleter<ort::SessionOptions>::operator()(ort::SessionOptions* p) const {
  if (p) api->ReleaseSessionOptions(p);
}
template <> void OrtDeleter<ort::RunOptions>::operator()(ort::RunOptions* p) const {
  if (p) api->ReleaseRunOptions(p);
}
template <> void OrtDeleter<ort::TypeInfo>::operator()(ort::TypeInfo* p) const { if (p) api->ReleaseTypeInfo(p); }
template <> void OrtDeleter<ort::TensorTypeAndShapeInfo>::operator()(ort::TensorTypeAndShapeInfo* p) const {
  if (p) api->ReleaseTensorTypeAndShapeInfo(p);
}
template <> void OrtDeleter<ort::MemoryInfo>::operator()(ort::MemoryInfo* p) const {
  if (p) api->ReleaseMemoryInfo(p);
}
template <> void OrtDeleter<ort::Allocator>::operator()(ort::Allocator* p) const {
  if (p) api->ReleaseAllocator(p);
}
template <> void OrtDeleter<ort::IoBinding>::operator()(ort::IoBinding* p) const {
  if (p) api->ReleaseIoBinding(p);
}
template <> void OrtDeleter<ort::CUDAProviderOptionsV2>::operator()(ort::CUDAProviderOptionsV2* p) const {
  if (p) api->ReleaseCUDAProviderOptions(p);
}

namespace {

std::mutex g_runtime_mutex;
Runtime* g_runtime = nullptr;  // never freed: ORT must outlive every session, even at exit

}  // namespace

const unsigned char kProbeModel[] = {
    0x08, 0x08, 0x3a, 0x37, 0x0a, 0x0c, 0x0a, 0x01, 0x78, 0x12, 0x01, 0x79, 0x22, 0x04, 0x52, 0x65, 0x6c,
    0x75, 0x12, 0x05, 0x70, 0x72, 0x6f, 0x62, 0x65, 0x5a, 0x0f, 0x0a, 0x01, 0x78, 0x12, 0x0a, 0x0a, 0x08,
    0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 0x08, 0x01, 0x62, 0x0f, 0x0a, 0x01, 0x79, 0x12, 0x0a, 0x0a, 0x08,
    0x08, 0x01, 0x12, 0x04, 0x0a, 0x02, 0x08, 0x01, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d};
const size_t kProbeModelSize = sizeof(kProbeModel);

Runtime::Runtime(const std::string& library_path, void* handle, const ort::ApiBase* base)
    : library_path_(library_path), handle_(handle) {
  version_ = base->GetVersionString();
  const void* table = base->GetApi(ort::kApiVersion);
  if (table == nullptr) {
    throw LibraryError("ONNX Runtime " + version_ + " at " + library_path +
                       " is too old: attribfast needs C API version " +
                       std::to_string(ort::kApiVersion) + " (onnxruntime >= 1." +
                       std::to_string(ort::kApiVersion) + ")");
  }
  api_ = ort::Api::from_table(table);
  check(api_.CreateEnv(ort::kError, "attribfast", &env_), Phase::kSetup, "creating the ORT environment");
  check(api_.GetAllocatorWithDefaultOptions(&allocator_), Phase::kSetup, "getting the default allocator");
  check(api_.CreateCpuMemoryInfo(ort::kArenaAllocator, ort::kMemTypeDefault, &cpu_memory_), Phase::kSetup,
        "creating CPU memory info");
}

Runtime& Runtime::load(const std::string& library_path) {
  std::lock_guard<std::mutex> lock(g_runtime_mutex);
  if (g_runtime != nullptr) {
    if (g_runtime->library_path_ != library_path) {
      throw LibraryError("ONNX Runtime is already loaded from " + g_runtime->library_path_ +
                         "; cannot switch to " + library_path + " in the same process");
    }
    return *g_runtime;
  }
  // RTLD_LOCAL keeps this copy's symbols away from the one embedded in onnxruntime's Python module.
  void* handle = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw LibraryError("cannot load ONNX Runtime from " + library_path + ": " + (why ? why : "unknown error"));
  }
  auto get_base = reinterpret_cast<ort::GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_base == nullptr) {
    dlclose(handle);
    throw LibraryError(library_path + " does not export OrtGetApiBase; is it an ONNX Runtime library?");
  }
  try {
    g_runtime = new Runtime(library_path, handle, get_base());
  } catch (...) {
    dlclose(handle);
    throw;
  }
  return *g_runtime;
}

Runtime& Runtime::get() {
  std::lock_guard<std::mutex> lock(g_runtime_mutex);
  if (g_runtime == nullptr) throw LibraryError("ONNX Runtime has not been loaded yet");
  return *g_runtime;
}

std::vector<std::string> Runtime::available_providers() const {
  char** names = nullptr;
  int count = 0;
  check(api_.GetAvailableProviders(&names, &count), Phase::kSetup, "listing providers");
  std::vector<std::string> result(names, names + count);
  check(api_.ReleaseAvailableProviders(names, count), Phase::kSetup, "releasing the provider list");
  return result;
}

bool cuda_memory_info(int device_id, size_t* free_bytes, size_t* total_bytes) {
  using GetDeviceFn = int (*)(int*);
  using SetDeviceFn = int (*)(int);
  using MemGetInfoFn = int (*)(size_t*, size_t*);
  static void* cudart = [] {
    for (const char* name : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"}) {
      if (void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return handle;
    }
    return static_cast<void*>(nullptr);
  }();
  if (cudart == nullptr) return false;
  auto get_device = reinterpret_cast<GetDeviceFn>(dlsym(cudart, "cudaGetDevice"));
  auto set_device = reinterpret_cast<SetDeviceFn>(dlsym(cudart, "cudaSetDevice"));
  auto mem_get_info = reinterpret_cast<MemGetInfoFn>(dlsym(cudart, "cudaMemGetInfo"));
  if (!get_device || !set_device || !mem_get_info) return false;
  // cudaMemGetInfo answers for the thread's current device: switch to ours, then back.
  int previous = 0;
  if (get_device(&previous) != 0 || set_device(device_id) != 0) return false;
  const bool ok = mem_get_info(free_bytes, total_bytes) == 0;
  set_device(previous);
  return ok;
}

bool Runtime::provider_usable(const std::string& provider, int device_id, std::string* why) const {
  SessionConfig config;
  config.provider = provider;
  config.device_id = device_id;
  config.allow_fallback = false;
  try {
    Session probe(*this, kProbeModel, kProbeModelSize, config);
    return true;
  } catch (const Error& e) {
    if (why) *why = e.what();
    return false;
  }
}

}  // namespace attribfast
