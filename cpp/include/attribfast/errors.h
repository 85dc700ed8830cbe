// Typed exceptions of the core. The Python binding maps each one to a class in attribfast.errors.
#pragma once

#include <stdexcept>
#include <string>

#include "attribfast/ort_api.h"

namespace attribfast {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The ONNX Runtime library cannot be found, loaded, or is older than the API version we need.
class LibraryError : public Error {
 public:
  using Error::Error;
};

class ModelLoadError : public Error {
 public:
  using Error::Error;
};

class InvalidInputError : public Error {
 public:
  using Error::Error;
};

class RuntimeBackendError : public Error {
 public:
  using Error::Error;
};

// A run did not fit the device's memory (ORT's arena or CUDA could not allocate): the engine
// retries such a batch with fewer rows before passing it on.
class DeviceMemoryError : public RuntimeBackendError {
 public:
  using RuntimeBackendError::RuntimeBackendError;
};

// The model produced NaN or infinite scores.
class NumericalError : public Error {
 public:
  using Error::Error;
};

// The scores are finite, but an attribution computed from them lies beyond float32's range, the
// type results are handed out in.
class AttributionOverflowError : public NumericalError {
 public:
  using NumericalError::NumericalError;
};

class CancelledError : public Error {
 public:
  using Error::Error;
};

// Where a failing ORT call happened; the same code means different things while loading and running.
enum class Phase { kSetup, kLoad, kRun };

// The one place that turns an ORT status into a typed exception. Releases the status.
[[noreturn]] void throw_status(const ort::Api& api, ort::Status* status, Phase phase,
                               const std::string& context);

inline void check_status(const ort::Api& api, ort::Status* status, Phase phase,
                         const std::string& context) {
  if (status != nullptr) throw_status(api, status, phase, context);
}

}  // namespace attribfast
