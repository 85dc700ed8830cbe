// Pure math of the attribution methods: quadrature rules, occlusion windows, sampling and the
// weighted least-squares solve. No ORT, no I/O; each function is tested exactly on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace attribfast::math {

// Integration nodes (alphas in [0, 1]) and weights for integrated gradients.
struct Quadrature {
  std::vector<double> alphas;
  std::vector<double> weights;
};

// The most points a rule takes. Gauss-Legendre nodes cost O(n) each, O(n^2) in all (timings:
// benchmarks/bench_quadrature.py); every point is a backward pass of the model, and far fewer
// already integrate float32 gradients to their precision.
constexpr int64_t kMaxQuadratureSteps = 1 << 16;

// Called between blocks of long pure work; it throws to stop the work (a cancelled run, Ctrl-C).
using CancelCheck = std::function<void()>;

// Captum's rules under Captum's names: "riemann_left", "riemann_right", "riemann_middle",
// "riemann_trapezoid" (weights 1/n with halved ends, summing to (n-1)/n, exactly as Captum) and
// "gausslegendre"; plus "trapezoid", the trapezoid rule normalised to sum to 1.
// n_steps in [1 or 2, kMaxQuadratureSteps]; `check` (optional) is called between blocks of nodes.
Quadrature quadrature(const std::string& method, int64_t n_steps, const CancelCheck& check = nullptr);
std::vector<std::string> quadrature_methods();

// Occlusion windows [start, end) over n positions, Captum's way: ceil((n - window) / stride) + 1
// windows starting at 0, stride, 2 stride, ...; the last one is clipped to the input where it
// overhangs the end. Every position is covered: a stride longer than the window (which would leave
// positions no window covers, and which Captum refuses too) is an InvalidInputError, unless the
// window spans the whole input.
std::vector<std::pair<int64_t, int64_t>> occlusion_windows(int64_t n, int64_t window, int64_t stride);

// Deterministic generator shared by the C++ engine and the Python tests (splitmix64 seeding a
// xoshiro256** state), so a seed names the same samples everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();                     // [0, 1)
  int64_t below(int64_t n);             // [0, n), unbiased
  std::vector<int64_t> permutation(int64_t n);

 private:
  uint64_t state_[4];
};

// Shapley kernel weight of a coalition of size k among m features: (m-1) / (C(m,k) k (m-k)).
double shapley_kernel_weight(int64_t m, int64_t k);

// KernelSHAP coalitions: the size k in [1, m-1] drawn with probability proportional to
// (m-1)/(k(m-k)), then k features chosen uniformly. Row-major [n_samples, m] of 0/1.
std::vector<uint8_t> kernel_shap_coalitions(int64_t m, int64_t n_samples, uint64_t seed);
// LIME coalitions: each feature kept with probability 1/2. Row-major [n_samples, m].
std::vector<uint8_t> lime_coalitions(int64_t m, int64_t n_samples, uint64_t seed);
// LIME's similarity of a coalition to the full input: exp(-d^2 / (2 width^2)), d the cosine
// distance between the 0/1 vector and all-ones (Captum's default kernel).
double lime_similarity(const uint8_t* coalition, int64_t m, double kernel_width);

// A real parameter must be finite and >= minimum (> minimum if strict); NaN fails too. Else an
// InvalidInputError naming it.
void check_real(const char* name, double value, double minimum, bool strict);

// Weighted least squares with intercept: minimises sum_i w_i (y_i - b - x_i . c)^2 + ridge |c|^2
// for each of the n_outputs columns of y. x is [n, m] (0/1 or real), y is [n, n_outputs].
// Returns [m + 1, n_outputs]: coefficients first, intercept last. ridge: finite, >= 0.
std::vector<double> weighted_least_squares(const std::vector<double>& x, const std::vector<double>& y,
                                           const std::vector<double>& w, int64_t n, int64_t m,
                                           int64_t n_outputs, double ridge);

}  // namespace attribfast::math
