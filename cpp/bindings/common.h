// Shared helpers of the bindings: numpy <-> tensor views, and running core work off the GIL.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "attribfast/gradient.h"
#include "attribfast/session.h"

namespace attribfast::bindings {

namespace py = pybind11;

// The one gate for numbers entering the core from Python. Every binding takes its integer and real
// parameters as Python objects and converts them here: a Python or numpy integer (bool refused) in
// [lo, hi], else an InvalidInputError that names the parameter. pybind's own casters would either
// let C++ narrow the value silently or fail with an opaque TypeError. Domain rules beyond
// representability (n <= tokens, finite ridge...) stay with the core functions that own them.
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
int64_t int_arg(const py::handle& value, const char* name, int64_t lo = 0, int64_t hi = kInt64Max);
uint64_t seed_arg(const py::handle& value, const char* name);  // [0, 2^64)
std::vector<int64_t> int_list_arg(const py::handle& values, const char* name, int64_t lo = 0,
                                  int64_t hi = kInt64Max);
std::vector<std::vector<int64_t>> int_lists_arg(const py::handle& values, const char* name, int64_t lo = 0,
                                                int64_t hi = kInt64Max);
double real_arg(const py::handle& value, const char* name);  // any float-convertible, NaN included

// "sum" | "l2", and "smoothgrad" | "smoothgrad_sq" | "vargrad"; anything else lists the names.
Aggregation aggregation_arg(const std::string& name);
NoiseTunnelType nt_type_arg(const std::string& name);
// Integrated gradients' parameters from their Python values, each checked as above.
IntegratedGradientsParams integrated_gradients_args(const std::string& method, const py::handle& n_steps,
                                                    const py::handle& tolerance, const py::handle& relative_tolerance,
                                                    const py::handle& max_steps, const std::string& aggregation);

int element_type_of(const py::dtype& dtype);
py::dtype dtype_of(int element_type);

// A C-contiguous view of a numpy array; `keep` holds the (possibly converted) array alive.
TensorView view_of(const py::array& array, py::array* keep);

py::array to_numpy(int element_type, const std::vector<int64_t>& shape, const void* data);

// Runs work(control, progress) on a worker thread with the GIL released. The calling thread wakes
// every 50 ms to deliver progress to the Python callback and to check for signals: Ctrl-C cancels
// the run (ORT's terminate flag) and raises KeyboardInterrupt here. Worker exceptions are rethrown
// on the calling thread.
template <typename Work>
auto run_off_gil(const Runtime& rt, const py::object& progress, Work work) {
  using Result = decltype(work(std::declval<RunControl&>(), std::declval<ProgressFn>()));
  RunControl control(rt);
  std::atomic<int64_t> done{0}, total{0};
  ProgressFn on_progress = [&](int64_t d, int64_t t) {
    done.store(d);
    total.store(t);
  };
  Result result{};
  std::exception_ptr error;
  std::mutex mutex;
  std::condition_variable finished_cv;
  bool finished = false;
  {
    py::gil_scoped_release release;
    std::thread worker([&] {
      try {
        result = work(control, on_progress);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex);
      finished = true;
      finished_cv.notify_all();
    });
    int64_t reported = -1;
    for (;;) {
      bool now_finished;
      {
        std::unique_lock<std::mutex> lock(mutex);
        now_finished = finished_cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return finished; });
      }
      py::gil_scoped_acquire acquire;
      try {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (!progress.is_none() && done.load() != reported) {
          reported = done.load();
          progress(reported, total.load());
        }
      } catch (...) {
        control.cancel();
        {
          py::gil_scoped_release wait_without_gil;
          worker.join();
        }
        throw;
      }
      if (now_finished) break;
    }
    worker.join();
  }
  if (error) std::rethrow_exception(error);
  return result;
}

}  // namespace attribfast::bindings
