#include "attribfast/errors.h"

namespace attribfast {

namespace {

// ORT reports allocation failures with no error code of their own, only in the message text.
bool is_allocation_failure(const std::string& message) {
  for (const char* marker : {"Failed to allocate memory", "out of memory", "CUBLAS_STATUS_ALLOC_FAILED",
                             "CUDNN_STATUS_ALLOC_FAILED", "bad_alloc"}) {
    if (message.find(marker) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

void throw_status(const ort::Api& api, ort::Status* status, Phase phase,
                  const std::string& context) {
  const ort::ErrorCode code = api.GetErrorCode(status);
  std::string message = context + ": " + api.GetErrorMessage(status);
  api.ReleaseStatus(status);
  switch (code) {
    case ort::kNoSuchFile:
    case ort::kNoModel:
    case ort::kInvalidProtobuf:
    case ort::kInvalidGraph:
    case ort::kModelLoaded:
      throw ModelLoadError(message);
    case ort::kInvalidArgument:
      if (phase == Phase::kLoad) throw ModelLoadError(message);
      throw InvalidInputError(message);
    case ort::kNotImplemented:
      // At run time this means no kernel for the given input types, i.e. the caller's dtypes.
      if (phase == Phase::kRun) throw InvalidInputError(message);
      if (phase == Phase::kLoad) throw ModelLoadError(message);
      throw RuntimeBackendError(message);
    default:
      if (phase == Phase::kLoad) throw ModelLoadError(message);
      if (phase == Phase::kRun && is_allocation_failure(message)) throw DeviceMemoryError(message);
      throw RuntimeBackendError(message);
  }
}

}  // namespace attribfast
