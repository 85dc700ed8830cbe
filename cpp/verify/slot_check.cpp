// Compiled only with -DATTRIBFAST_ORT_INCLUDE_DIR=<folder holding the official onnxruntime_c_api.h>.
// Proves at compile time that each function we declare sits at the same slot of OrtApi and has the
// same signature as the official member, and that our enum values equal the official ones.
#include <onnxruntime_c_api.h>

#include <cstddef>
#include <type_traits>

#include "attribfast/ort_api.h"

namespace {

namespace af = attribfast::ort;

// Maps a type written with our declarations to the same type written with the official ones.
template <typename T> struct Official { using type = T; };
template <typename T> struct Official<T*> { using type = typename Official<T>::type*; };
template <typename T> struct Official<const T> { using type = const typename Official<T>::type; };
template <typename R, typename... A> struct Official<R (*)(A...)> {
  using type = typename Official<R>::type (*)(typename Official<A>::type...);
};
#define ATTRIBFAST_SAME_TYPE(ours, theirs) template <> struct Official<af::ours> { using type = theirs; };
ATTRIBFAST_SAME_TYPE(Env, OrtEnv)
ATTRIBFAST_SAME_TYPE(Status, OrtStatus)
ATTRIBFAST_SAME_TYPE(Session, OrtSession)
ATTRIBFAST_SAME_TYPE(SessionOptions, OrtSessionOptions)
ATTRIBFAST_SAME_TYPE(Value, OrtValue)
ATTRIBFAST_SAME_TYPE(RunOptions, OrtRunOptions)
ATTRIBFAST_SAME_TYPE(TypeInfo, OrtTypeInfo)
ATTRIBFAST_SAME_TYPE(TensorTypeAndShapeInfo, OrtTensorTypeAndShapeInfo)
ATTRIBFAST_SAME_TYPE(MemoryInfo, OrtMemoryInfo)
ATTRIBFAST_SAME_TYPE(Allocator, OrtAllocator)
ATTRIBFAST_SAME_TYPE(IoBinding, OrtIoBinding)
ATTRIBFAST_SAME_TYPE(CUDAProviderOptionsV2, OrtCUDAProviderOptionsV2)
ATTRIBFAST_SAME_TYPE(ErrorCode, OrtErrorCode)
ATTRIBFAST_SAME_TYPE(LoggingLevel, OrtLoggingLevel)
ATTRIBFAST_SAME_TYPE(GraphOptimizationLevel, ::GraphOptimizationLevel)
ATTRIBFAST_SAME_TYPE(AllocatorType, OrtAllocatorType)
ATTRIBFAST_SAME_TYPE(MemType, OrtMemType)
ATTRIBFAST_SAME_TYPE(OnnxType, ONNXType)
ATTRIBFAST_SAME_TYPE(ElementType, ONNXTensorElementDataType)
#undef ATTRIBFAST_SAME_TYPE

// The official members are declared noexcept (part of the type since C++17); ours are not.
template <typename F> struct WithoutNoexcept { using type = F; };
template <typename R, typename... A> struct WithoutNoexcept<R (*)(A...) noexcept> { using type = R (*)(A...); };

#define ATTRIBFAST_CHECK_SLOT(name, slot_index, since, ...)                                           \
  static_assert(offsetof(OrtApi, name) == (slot_index) * sizeof(void*), #name ": slot index differs"); \
  static_assert(std::is_same_v<Official<af::fn::name>::type,                                        \
                               WithoutNoexcept<decltype(OrtApi::name)>::type>,                       \
                #name ": signature differs from the official declaration");
ATTRIBFAST_ORT_FUNCTIONS(ATTRIBFAST_CHECK_SLOT)
#undef ATTRIBFAST_CHECK_SLOT

static_assert(ORT_API_VERSION >= af::kApiVersion, "the official header predates the API version we request");
static_assert(offsetof(OrtApiBase, GetApi) == 0 && offsetof(OrtApiBase, GetVersionString) == sizeof(void*),
              "OrtApiBase layout differs");
static_assert(sizeof(OrtApiBase) == sizeof(af::ApiBase), "OrtApiBase size differs");

#define ATTRIBFAST_CHECK_VALUE(ours, theirs) \
  static_assert(static_cast<int>(af::ours) == static_cast<int>(theirs), #ours " != " #theirs);
ATTRIBFAST_CHECK_VALUE(kOk, ORT_OK)
ATTRIBFAST_CHECK_VALUE(kFail, ORT_FAIL)
ATTRIBFAST_CHECK_VALUE(kInvalidArgument, ORT_INVALID_ARGUMENT)
ATTRIBFAST_CHECK_VALUE(kNoSuchFile, ORT_NO_SUCHFILE)
ATTRIBFAST_CHECK_VALUE(kNoModel, ORT_NO_MODEL)
ATTRIBFAST_CHECK_VALUE(kEngineError, ORT_ENGINE_ERROR)
ATTRIBFAST_CHECK_VALUE(kRuntimeException, ORT_RUNTIME_EXCEPTION)
ATTRIBFAST_CHECK_VALUE(kInvalidProtobuf, ORT_INVALID_PROTOBUF)
ATTRIBFAST_CHECK_VALUE(kModelLoaded, ORT_MODEL_LOADED)
ATTRIBFAST_CHECK_VALUE(kNotImplemented, ORT_NOT_IMPLEMENTED)
ATTRIBFAST_CHECK_VALUE(kInvalidGraph, ORT_INVALID_GRAPH)
ATTRIBFAST_CHECK_VALUE(kEpFail, ORT_EP_FAIL)
ATTRIBFAST_CHECK_VALUE(kError, ORT_LOGGING_LEVEL_ERROR)
ATTRIBFAST_CHECK_VALUE(kDisableAll, ORT_DISABLE_ALL)
ATTRIBFAST_CHECK_VALUE(kEnableBasic, ORT_ENABLE_BASIC)
ATTRIBFAST_CHECK_VALUE(kEnableExtended, ORT_ENABLE_EXTENDED)
ATTRIBFAST_CHECK_VALUE(kEnableAll, ORT_ENABLE_ALL)
ATTRIBFAST_CHECK_VALUE(kDeviceAllocator, OrtDeviceAllocator)
ATTRIBFAST_CHECK_VALUE(kArenaAllocator, OrtArenaAllocator)
ATTRIBFAST_CHECK_VALUE(kMemTypeCpuOutput, OrtMemTypeCPUOutput)
ATTRIBFAST_CHECK_VALUE(kMemTypeDefault, OrtMemTypeDefault)
ATTRIBFAST_CHECK_VALUE(kTypeTensor, ONNX_TYPE_TENSOR)
ATTRIBFAST_CHECK_VALUE(kFloat32, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
ATTRIBFAST_CHECK_VALUE(kFloat64, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE)
ATTRIBFAST_CHECK_VALUE(kFloat16, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16)
ATTRIBFAST_CHECK_VALUE(kInt64, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64)
ATTRIBFAST_CHECK_VALUE(kInt32, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
ATTRIBFAST_CHECK_VALUE(kBool, ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL)
ATTRIBFAST_CHECK_VALUE(kUint8, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8)
ATTRIBFAST_CHECK_VALUE(kUint64, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64)
#undef ATTRIBFAST_CHECK_VALUE

}  // namespace
