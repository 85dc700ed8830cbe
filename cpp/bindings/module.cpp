#include <pybind11/pybind11.h>

#include "attribfast/errors.h"

namespace py = pybind11;

namespace attribfast::bindings {
void bind_engine(py::module_& m);
void bind_methods(py::module_& m);
void bind_pooled(py::module_& m);
}  // namespace attribfast::bindings

namespace {

// Raises the attribfast.errors class of that name; the module is pure Python and imports nothing
// from here, so importing it from the translator cannot recurse.
void raise_typed(const char* name, const char* message) {
  py::object errors = py::module_::import("attribfast.errors");
  PyErr_SetString(errors.attr(name).ptr(), message);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "attribfast's compiled core (private; use the attribfast package)";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const attribfast::LibraryError& e) {
      raise_typed("LibraryError", e.what());
    } catch (const attribfast::ModelLoadError& e) {
      raise_typed("ModelLoadError", e.what());
    } catch (const attribfast::InvalidInputError& e) {
      raise_typed("InvalidInputError", e.what());
    } catch (const attribfast::AttributionOverflowError& e) {
      raise_typed("AttributionOverflowError", e.what());
    } catch (const attribfast::NumericalError& e) {
      raise_typed("NonFiniteScoreError", e.what());
    } catch (const attribfast::CancelledError& e) {
      raise_typed("CancelledError", e.what());
    } catch (const attribfast::DeviceMemoryError& e) {
      raise_typed("DeviceMemoryError", e.what());
    } catch (const attribfast::RuntimeBackendError& e) {
      raise_typed("RuntimeBackendError", e.what());
    } catch (const attribfast::Error& e) {
      raise_typed("AttribfastError", e.what());
    }
  });
  attribfast::bindings::bind_engine(m);
  attribfast::bindings::bind_methods(m);
  attribfast::bindings::bind_pooled(m);
}
