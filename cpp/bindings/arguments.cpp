// Conversion of Python numbers to the core's types, checked: see common.h.
#include <string>

#include "attribfast/math.h"
#include "common.h"

namespace attribfast::bindings {

namespace {

std::string shown(const py::handle& value) { return py::repr(value).cast<std::string>(); }

std::string bound(int64_t value) {
  if (value == kInt64Max) return "2**63 - 1";
  if (value == std::numeric_limits<int64_t>::min()) return "-2**63";
  return std::to_string(value);
}

[[noreturn]] void out_of_range(const char* name, const std::string& range, const py::handle& value) {
  throw InvalidInputError(std::string(name) + " must be an integer in " + range + ", got " + shown(value));
}

// The value as a Python int: ints and numpy integers (anything with __index__), not bools or floats.
py::object as_int(const py::handle& value, const char* name) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr())) {
    throw InvalidInputError(std::string(name) + " must be an integer, got " + shown(value));
  }
  return py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
}

// Each element of a sequence (list, tuple, 1-D array...), for element-wise conversion.
template <typename Convert>
auto each(const py::handle& values, const char* name, Convert convert) {
  if (!PySequence_Check(values.ptr()) || PyUnicode_Check(values.ptr()) || PyBytes_Check(values.ptr())) {
    throw InvalidInputError(std::string(name) + " must be a sequence, got " + shown(values));
  }
  const py::sequence sequence = py::reinterpret_borrow<py::sequence>(values);
  std::vector<decltype(convert(sequence[0]))> out;
  out.reserve(sequence.size());
  for (const auto item : sequence) out.push_back(convert(item));
  return out;
}

}  // namespace

int64_t int_arg(const py::handle& value, const char* name, int64_t lo, int64_t hi) {
  const py::object index = as_int(value, name);
  if (!index) throw py::error_already_set();
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
  if (x == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow != 0 || x < lo || x > hi) out_of_range(name, "[" + bound(lo) + ", " + bound(hi) + "]", value);
  return x;
}

uint64_t seed_arg(const py::handle& value, const char* name) {
  const py::object index = as_int(value, name);
  if (!index) throw py::error_already_set();
  const unsigned long long x = PyLong_AsUnsignedLongLong(index.ptr());
  if (x == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();  // OverflowError for negatives and values past 2^64 - 1
    out_of_range(name, "[0, 2**64 - 1]", value);
  }
  return x;
}

std::vector<int64_t> int_list_arg(const py::handle& values, const char* name, int64_t lo, int64_t hi) {
  return each(values, name, [&](const py::handle& item) { return int_arg(item, name, lo, hi); });
}

std::vector<std::vector<int64_t>> int_lists_arg(const py::handle& values, const char* name, int64_t lo, int64_t hi) {
  return each(values, name, [&](const py::handle& item) { return int_list_arg(item, name, lo, hi); });
}

double real_arg(const py::handle& value, const char* name) {
  if (PyBool_Check(value.ptr()) || !(PyFloat_Check(value.ptr()) || PyIndex_Check(value.ptr()) ||
                                     PyNumber_Check(value.ptr()))) {
    throw InvalidInputError(std::string(name) + " must be a real number, got " + shown(value));
  }
  const double x = PyFloat_AsDouble(value.ptr());
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();  // e.g. an int beyond the float range
    throw InvalidInputError(std::string(name) + " must be a real number within the float range, got " + shown(value));
  }
  return x;
}

Aggregation aggregation_arg(const std::string& name) {
  if (name == "sum") return Aggregation::kSum;
  if (name == "l2") return Aggregation::kL2;
  throw InvalidInputError("unknown aggregation '" + name + "' (possible: sum, l2)");
}

IntegratedGradientsParams integrated_gradients_args(const std::string& method, const py::handle& n_steps,
                                                    const py::handle& tolerance, const py::handle& relative_tolerance,
                                                    const py::handle& max_steps, const std::string& aggregation) {
  return {method, int_arg(n_steps, "n_steps", 1, math::kMaxQuadratureSteps), real_arg(tolerance, "tolerance"),
          real_arg(relative_tolerance, "relative_tolerance"), int_arg(max_steps, "max_steps", 1, math::kMaxQuadratureSteps),
          aggregation_arg(aggregation)};
}

NoiseTunnelType nt_type_arg(const std::string& name) {
  if (name == "smoothgrad") return NoiseTunnelType::kSmoothGrad;
  if (name == "smoothgrad_sq") return NoiseTunnelType::kSmoothGradSq;
  if (name == "vargrad") return NoiseTunnelType::kVarGrad;
  throw InvalidInputError("unknown nt_type '" + name + "' (possible: smoothgrad, smoothgrad_sq, vargrad)");
}

}  // namespace attribfast::bindings
