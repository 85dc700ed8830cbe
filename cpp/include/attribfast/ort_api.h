// Our own declarations of the few ONNX Runtime C API functions attribfast calls.
//
// ORT's headers are not shipped by any package registry, so the core never includes them. The
// OrtApi struct is an append-only table of function pointers; we read entries by their zero-based
// slot index (facts from shared/ort-c-api-slots.tsv) and give each our own signature. Structs stay
// opaque. Build with -DATTRIBFAST_ORT_INCLUDE_DIR=<dir with onnxruntime_c_api.h> to have the
// compiler check every slot and signature against the official header (cpp/verify/).
#pragma once

#include <cstddef>
#include <cstdint>

namespace attribfast::ort {

// The API version requested from the library. Every slot below was added at or before it.
inline constexpr uint32_t kApiVersion = 16;

struct Env;
struct Status;
struct Session;
struct SessionOptions;
struct Value;
struct RunOptions;
struct TypeInfo;
struct TensorTypeAndShapeInfo;
struct MemoryInfo;
struct Allocator;
struct IoBinding;
struct CUDAProviderOptionsV2;

enum ErrorCode : int {
  kOk = 0,
  kFail = 1,
  kInvalidArgument = 2,
  kNoSuchFile = 3,
  kNoModel = 4,
  kEngineError = 5,
  kRuntimeException = 6,
  kInvalidProtobuf = 7,
  kModelLoaded = 8,
  kNotImplemented = 9,
  kInvalidGraph = 10,
  kEpFail = 11,
};

enum LoggingLevel : int { kVerbose = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

enum GraphOptimizationLevel : int {
  kDisableAll = 0,
  kEnableBasic = 1,
  kEnableExtended = 2,
  kEnableAll = 99,
};

enum AllocatorType : int { kInvalidAllocator = -1, kDeviceAllocator = 0, kArenaAllocator = 1 };

enum MemType : int { kMemTypeCpuInput = -2, kMemTypeCpuOutput = -1, kMemTypeDefault = 0 };

enum OnnxType : int { kTypeUnknown = 0, kTypeTensor = 1 };

// Values follow ONNX's TensorProto.DataType numbering, which ORT reuses.
enum ElementType : int {
  kUndefined = 0,
  kFloat32 = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUint32 = 12,
  kUint64 = 13,
};

struct ApiBase {
  const void* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

using GetApiBaseFn = const ApiBase* (*)();

// X(name, slot, api version that added it, function pointer type)
#define ATTRIBFAST_ORT_FUNCTIONS(X)                                                              \
  X(CreateStatus, 0, 1, Status* (*)(ErrorCode, const char*))                                     \
  X(GetErrorCode, 1, 1, ErrorCode (*)(const Status*))                                            \
  X(GetErrorMessage, 2, 1, const char* (*)(const Status*))                                       \
  X(CreateEnv, 3, 1, Status* (*)(LoggingLevel, const char*, Env**))                              \
  X(CreateSession, 7, 1, Status* (*)(const Env*, const char*, const SessionOptions*, Session**))  \
  X(CreateSessionFromArray, 8, 1,                                                                \
    Status* (*)(const Env*, const void*, size_t, const SessionOptions*, Session**))              \
  X(Run, 9, 1,                                                                                   \
    Status* (*)(Session*, const RunOptions*, const char* const*, const Value* const*, size_t,    \
                const char* const*, size_t, Value**))                                            \
  X(CreateSessionOptions, 10, 1, Status* (*)(SessionOptions**))                                  \
  X(SetSessionLogSeverityLevel, 22, 1, Status* (*)(SessionOptions*, int))                        \
  X(SetSessionGraphOptimizationLevel, 23, 1, Status* (*)(SessionOptions*, GraphOptimizationLevel)) \
  X(SetIntraOpNumThreads, 24, 1, Status* (*)(SessionOptions*, int))                              \
  X(SessionGetInputCount, 30, 1, Status* (*)(const Session*, size_t*))                           \
  X(SessionGetOutputCount, 31, 1, Status* (*)(const Session*, size_t*))                          \
  X(SessionGetInputTypeInfo, 33, 1, Status* (*)(const Session*, size_t, TypeInfo**))             \
  X(SessionGetOutputTypeInfo, 34, 1, Status* (*)(const Session*, size_t, TypeInfo**))            \
  X(SessionGetInputName, 36, 1, Status* (*)(const Session*, size_t, Allocator*, char**))         \
  X(SessionGetOutputName, 37, 1, Status* (*)(const Session*, size_t, Allocator*, char**))        \
  X(CreateRunOptions, 39, 1, Status* (*)(RunOptions**))                                          \
  X(RunOptionsSetTerminate, 46, 1, Status* (*)(RunOptions*))                                     \
  X(RunOptionsUnsetTerminate, 47, 1, Status* (*)(RunOptions*))                                   \
  X(CreateTensorAsOrtValue, 48, 1,                                                               \
    Status* (*)(Allocator*, const int64_t*, size_t, ElementType, Value**))                       \
  X(CreateTensorWithDataAsOrtValue, 49, 1,                                                       \
    Status* (*)(const MemoryInfo*, void*, size_t, const int64_t*, size_t, ElementType, Value**)) \
  X(GetTensorMutableData, 51, 1, Status* (*)(Value*, void**))                                    \
  X(CastTypeInfoToTensorInfo, 55, 1,                                                             \
    Status* (*)(const TypeInfo*, const TensorTypeAndShapeInfo**))                                \
  X(GetOnnxTypeFromTypeInfo, 56, 1, Status* (*)(const TypeInfo*, OnnxType*))                     \
  X(GetTensorElementType, 60, 1, Status* (*)(const TensorTypeAndShapeInfo*, ElementType*))       \
  X(GetDimensionsCount, 61, 1, Status* (*)(const TensorTypeAndShapeInfo*, size_t*))              \
  X(GetDimensions, 62, 1, Status* (*)(const TensorTypeAndShapeInfo*, int64_t*, size_t))          \
  X(GetSymbolicDimensions, 63, 1,                                                                \
    Status* (*)(const TensorTypeAndShapeInfo*, const char**, size_t))                            \
  X(GetTensorTypeAndShape, 65, 1, Status* (*)(const Value*, TensorTypeAndShapeInfo**))          \
  X(CreateMemoryInfo, 68, 1,                                                                     \
    Status* (*)(const char*, AllocatorType, int, MemType, MemoryInfo**))                         \
  X(CreateCpuMemoryInfo, 69, 1, Status* (*)(AllocatorType, MemType, MemoryInfo**))               \
  X(AllocatorAlloc, 75, 1, Status* (*)(Allocator*, size_t, void**))                              \
  X(AllocatorFree, 76, 1, Status* (*)(Allocator*, void*))                                        \
  X(GetAllocatorWithDefaultOptions, 78, 1, Status* (*)(Allocator**))                             \
  X(ReleaseEnv, 92, 1, void (*)(Env*))                                                           \
  X(ReleaseStatus, 93, 1, void (*)(Status*))                                                     \
  X(ReleaseMemoryInfo, 94, 1, void (*)(MemoryInfo*))                                             \
  X(ReleaseSession, 95, 1, void (*)(Session*))                                                   \
  X(ReleaseValue, 96, 1, void (*)(Value*))                                                       \
  X(ReleaseRunOptions, 97, 1, void (*)(RunOptions*))                                             \
  X(ReleaseTypeInfo, 98, 1, void (*)(TypeInfo*))                                                 \
  X(ReleaseTensorTypeAndShapeInfo, 99, 1, void (*)(TensorTypeAndShapeInfo*))                     \
  X(ReleaseSessionOptions, 100, 1, void (*)(SessionOptions*))                                    \
  X(GetAvailableProviders, 125, 4, Status* (*)(char***, int*))                                   \
  X(ReleaseAvailableProviders, 126, 4, Status* (*)(char**, int))                                 \
  X(AddSessionConfigEntry, 130, 5, Status* (*)(SessionOptions*, const char*, const char*))       \
  X(CreateAllocator, 131, 5, Status* (*)(const Session*, const MemoryInfo*, Allocator**))       \
  X(ReleaseAllocator, 132, 5, void (*)(Allocator*))                                              \
  X(RunWithBinding, 133, 5, Status* (*)(Session*, const RunOptions*, const IoBinding*))          \
  X(CreateIoBinding, 134, 5, Status* (*)(Session*, IoBinding**))                                 \
  X(ReleaseIoBinding, 135, 5, void (*)(IoBinding*))                                              \
  X(BindInput, 136, 5, Status* (*)(IoBinding*, const char*, const Value*))                       \
  X(BindOutputToDevice, 138, 5, Status* (*)(IoBinding*, const char*, const MemoryInfo*))         \
  X(GetBoundOutputValues, 140, 5,                                                                \
    Status* (*)(const IoBinding*, Allocator*, Value***, size_t*))                                \
  X(ClearBoundInputs, 141, 5, void (*)(IoBinding*))                                              \
  X(ClearBoundOutputs, 142, 5, void (*)(IoBinding*))                                             \
  X(SynchronizeBoundOutputs, 203, 10, Status* (*)(IoBinding*))                                   \
  X(SessionOptionsAppendExecutionProvider_CUDA_V2, 204, 11,                                      \
    Status* (*)(SessionOptions*, const CUDAProviderOptionsV2*))                                  \
  X(CreateCUDAProviderOptions, 205, 11, Status* (*)(CUDAProviderOptionsV2**))                    \
  X(UpdateCUDAProviderOptions, 206, 11,                                                          \
    Status* (*)(CUDAProviderOptionsV2*, const char* const*, const char* const*, size_t))         \
  X(ReleaseCUDAProviderOptions, 208, 11, void (*)(CUDAProviderOptionsV2*))

namespace fn {
#define ATTRIBFAST_ORT_DECLARE_TYPE(name, slot, since, ...) using name = __VA_ARGS__;
ATTRIBFAST_ORT_FUNCTIONS(ATTRIBFAST_ORT_DECLARE_TYPE)
#undef ATTRIBFAST_ORT_DECLARE_TYPE
}  // namespace fn

namespace slot {
#define ATTRIBFAST_ORT_DECLARE_SLOT(name, slot_index, since, ...) \
  inline constexpr size_t name = slot_index;                      \
  static_assert(since <= kApiVersion, #name " is newer than the API version we request");
ATTRIBFAST_ORT_FUNCTIONS(ATTRIBFAST_ORT_DECLARE_SLOT)
#undef ATTRIBFAST_ORT_DECLARE_SLOT
}  // namespace slot

// Typed view of the function table, filled from the library's OrtApi by slot index.
struct Api {
#define ATTRIBFAST_ORT_DECLARE_MEMBER(name, slot, since, ...) fn::name name = nullptr;
  ATTRIBFAST_ORT_FUNCTIONS(ATTRIBFAST_ORT_DECLARE_MEMBER)
#undef ATTRIBFAST_ORT_DECLARE_MEMBER

  static Api from_table(const void* table) {
    auto entries = static_cast<void* const*>(table);
    Api api;
#define ATTRIBFAST_ORT_LOAD_MEMBER(name, slot_index, since, ...) \
  api.name = reinterpret_cast<fn::name>(entries[slot_index]);
    ATTRIBFAST_ORT_FUNCTIONS(ATTRIBFAST_ORT_LOAD_MEMBER)
#undef ATTRIBFAST_ORT_LOAD_MEMBER
    return api;
  }
};

}  // namespace attribfast::ort
