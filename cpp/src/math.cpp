#include "attribfast/math.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "attribfast/errors.h"

namespace attribfast::math {

namespace {

constexpr double kPi = 3.14159265358979323846;

// Nodes and weights of n-point Gauss-Legendre on [-1, 1], by Newton iteration on P_n evaluated
// with the three-term recurrence: O(n) a node. Tricomi's estimate of the roots is within O(n^-4),
// so one or two steps suffice. Nodes are solved in blocks of kLanes at once, which lets the
// recurrence run in SIMD lanes; `check` is called between blocks.
void gauss_legendre(int64_t n, std::vector<double>* nodes, std::vector<double>* weights, const CancelCheck& check) {
  constexpr int kLanes = 8;
  nodes->assign(n, 0.0);
  weights->assign(n, 0.0);
  std::vector<double> inverse(n + 1, 0.0);
  for (int64_t k = 1; k <= n; ++k) inverse[k] = 1.0 / static_cast<double>(k);
  const double nd = static_cast<double>(n);
  const int64_t half = (n + 1) / 2;  // the rest follow by symmetry
  for (int64_t first = 0; first < half; first += kLanes) {
    if (check) check();
    const int64_t lanes = std::min<int64_t>(kLanes, half - first);
    double x[kLanes], p0[kLanes], p1[kLanes], derivative[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      const double i = static_cast<double>(first + std::min<int64_t>(l, lanes - 1));  // spare lanes repeat
      x[l] = (1.0 - (nd - 1.0) / (8.0 * nd * nd * nd)) * std::cos(kPi * (4.0 * i + 3.0) / (4.0 * nd + 2.0));
    }
    for (int iteration = 0; iteration < 100; ++iteration) {
      for (int l = 0; l < kLanes; ++l) {
        p0[l] = 1.0;
        p1[l] = x[l];
      }
      for (int64_t k = 2; k <= n; ++k) {
        const double a = 2.0 * static_cast<double>(k) - 1.0, b = static_cast<double>(k) - 1.0, c = inverse[k];
        for (int l = 0; l < kLanes; ++l) {
          const double pk = (a * x[l] * p1[l] - b * p0[l]) * c;
          p0[l] = p1[l];
          p1[l] = pk;
        }
      }
      double largest = 0.0;
      for (int l = 0; l < kLanes; ++l) {
        derivative[l] = nd * (x[l] * p1[l] - p0[l]) / (x[l] * x[l] - 1.0);
        const double step = p1[l] / derivative[l];
        x[l] -= step;
        largest = std::max(largest, std::fabs(step));
      }
      if (largest < 1e-15) break;
    }
    for (int64_t l = 0; l < lanes; ++l) {
      const int64_t i = first + l;
      const double w = 2.0 / ((1.0 - x[l] * x[l]) * derivative[l] * derivative[l]);
      (*nodes)[i] = -x[l];  // ascending order, as numpy's leggauss
      (*nodes)[n - 1 - i] = x[l];
      (*weights)[i] = w;
      (*weights)[n - 1 - i] = w;
    }
  }
}

}  // namespace

std::vector<std::string> quadrature_methods() {
  return {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "trapezoid"};
}

Quadrature quadrature(const std::string& method, int64_t n_steps, const CancelCheck& check) {
  const auto methods = quadrature_methods();
  if (std::find(methods.begin(), methods.end(), method) == methods.end()) {
    std::string all;
    for (const auto& m : methods) all += (all.empty() ? "" : ", ") + m;
    throw InvalidInputError("unknown integration method '" + method + "' (possible: " + all + ")");
  }
  const bool is_gauss = method == "gausslegendre";
  if (n_steps < (is_gauss ? 1 : 2)) {
    throw InvalidInputError("n_steps must be at least " + std::to_string(is_gauss ? 1 : 2) + " for " + method);
  }
  if (n_steps > kMaxQuadratureSteps) {
    throw InvalidInputError("n_steps must be at most " + std::to_string(kMaxQuadratureSteps) + ", got " +
                            std::to_string(n_steps));
  }
  const int64_t n = n_steps;
  Quadrature q;
  q.alphas.resize(n);
  q.weights.assign(n, 1.0 / n);
  if (is_gauss) {
    std::vector<double> nodes, weights;
    gauss_legendre(n, &nodes, &weights, check);
    for (int64_t i = 0; i < n; ++i) {
      q.alphas[i] = 0.5 * (1.0 + nodes[i]);
      q.weights[i] = 0.5 * weights[i];
    }
    return q;
  }
  for (int64_t i = 0; i < n; ++i) {
    if (method == "riemann_left") q.alphas[i] = (1.0 - 1.0 / n) * i / (n - 1);
    else if (method == "riemann_right") q.alphas[i] = 1.0 / n + (1.0 - 1.0 / n) * i / (n - 1);
    else if (method == "riemann_middle") q.alphas[i] = 0.5 / n + (1.0 - 1.0 / n) * i / (n - 1);
    else q.alphas[i] = static_cast<double>(i) / (n - 1);  // both trapezoids
  }
  if (method == "riemann_trapezoid") {
    q.weights.front() /= 2;
    q.weights.back() /= 2;
  } else if (method == "trapezoid") {
    q.weights.assign(n, 1.0 / (n - 1));
    q.weights.front() /= 2;
    q.weights.back() /= 2;
  }
  return q;
}

std::vector<std::pair<int64_t, int64_t>> occlusion_windows(int64_t n, int64_t window, int64_t stride) {
  if (n < 1) throw InvalidInputError("occlusion needs at least one token");
  if (window < 1 || stride < 1) throw InvalidInputError("occlusion window and stride must be >= 1");
  if (window > n) {
    throw InvalidInputError("occlusion window " + std::to_string(window) + " is longer than the input (" +
                            std::to_string(n) + " tokens)");
  }
  if (window < n && stride > window) {
    const int64_t last = std::min(stride, n) - 1;  // tokens [window, last] fall between the first two windows
    const std::string gap = last == window ? "token " + std::to_string(window)
                                           : "tokens " + std::to_string(window) + " to " + std::to_string(last);
    throw InvalidInputError("occlusion stride " + std::to_string(stride) + " is longer than the window " +
                            std::to_string(window) + ": no window would cover " + gap + ", whose attribution " +
                            "would be undefined; use a stride <= the window (as Captum requires)");
  }
  // Captum: ceil((n - window) / stride) + 1 shifts; the last window is clipped to the input. Here
  // stride <= window <= n, or window == n (one shift), so nothing overflows and every start < n.
  const int64_t shifts = window == n ? 1 : (n - window + stride - 1) / stride + 1;
  std::vector<std::pair<int64_t, int64_t>> windows;
  for (int64_t i = 0; i < shifts; ++i) windows.emplace_back(i * stride, std::min(i * stride + window, n));
  return windows;
}

void check_real(const char* name, double value, double minimum, bool strict) {
  const bool in_domain = std::isfinite(value) && (strict ? value > minimum : value >= minimum);
  if (!in_domain) {
    std::ostringstream message;
    message << name << " must be a finite number " << (strict ? "> " : ">= ") << minimum << ", got " << value;
    throw InvalidInputError(message.str());
  }
}

Rng::Rng(uint64_t seed) {
  for (auto& s : state_) {
    seed += 0x9e3779b97f4a7c15ULL;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int64_t Rng::below(int64_t n) {
  const uint64_t bound = static_cast<uint64_t>(n);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t x;
  do x = next(); while (x >= limit);
  return static_cast<int64_t>(x % bound);
}

std::vector<int64_t> Rng::permutation(int64_t n) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[below(i + 1)]);  // Fisher-Yates
  return p;
}

double shapley_kernel_weight(int64_t m, int64_t k) {
  if (k <= 0 || k >= m) return 0.0;
  // log C(m, k) keeps large m finite.
  const double log_binom = std::lgamma(m + 1.0) - std::lgamma(k + 1.0) - std::lgamma(m - k + 1.0);
  return (m - 1.0) / (std::exp(log_binom) * k * (m - k));
}

std::vector<uint8_t> kernel_shap_coalitions(int64_t m, int64_t n_samples, uint64_t seed) {
  if (m < 2) throw InvalidInputError("KernelSHAP needs at least 2 features");
  std::vector<double> cumulative;
  double total = 0.0;
  for (int64_t k = 1; k < m; ++k) cumulative.push_back(total += (m - 1.0) / (k * (m - k)));
  Rng rng(seed);
  std::vector<uint8_t> out(static_cast<size_t>(n_samples * m), 0);
  for (int64_t i = 0; i < n_samples; ++i) {
    const double u = rng.uniform() * total;
    const int64_t k = 1 + (std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
    const auto order = rng.permutation(m);
    for (int64_t j = 0; j < std::min(k, m - 1); ++j) out[i * m + order[j]] = 1;
  }
  return out;
}

std::vector<uint8_t> lime_coalitions(int64_t m, int64_t n_samples, uint64_t seed) {
  if (m < 1) throw InvalidInputError("LIME needs at least 1 feature");
  Rng rng(seed);
  std::vector<uint8_t> out(static_cast<size_t>(n_samples * m));
  for (auto& bit : out) bit = static_cast<uint8_t>(rng.next() >> 63);
  return out;
}

double lime_similarity(const uint8_t* coalition, int64_t m, double kernel_width) {
  int64_t kept = 0;
  for (int64_t j = 0; j < m; ++j) kept += coalition[j] ? 1 : 0;
  const double cosine = kept == 0 ? 0.0 : kept / (std::sqrt(static_cast<double>(kept)) * std::sqrt(static_cast<double>(m)));
  const double distance = 1.0 - cosine;
  return std::exp(-distance * distance / (2.0 * kernel_width * kernel_width));
}

std::vector<double> weighted_least_squares(const std::vector<double>& x, const std::vector<double>& y,
                                           const std::vector<double>& w, int64_t n, int64_t m, int64_t n_outputs,
                                           double ridge) {
  check_real("ridge", ridge, 0.0, false);
  const int64_t p = m + 1;  // features + intercept
  // Normal equations (X^T W X + ridge I') beta = X^T W y, solved by Cholesky. The intercept is not
  // penalised. A tiny diagonal floor keeps features that never vary solvable (their coefficient -> 0).
  std::vector<double> a(p * p, 0.0), b(p * n_outputs, 0.0), row(p);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) row[j] = x[i * m + j];
    row[m] = 1.0;
    for (int64_t r = 0; r < p; ++r) {
      const double wr = w[i] * row[r];
      for (int64_t c = 0; c <= r; ++c) a[r * p + c] += wr * row[c];
      for (int64_t o = 0; o < n_outputs; ++o) b[r * n_outputs + o] += wr * y[i * n_outputs + o];
    }
  }
  double scale = 0.0;
  for (int64_t r = 0; r < p; ++r) scale = std::max(scale, a[r * p + r]);
  for (int64_t r = 0; r < m; ++r) a[r * p + r] += ridge + 1e-12 * std::max(scale, 1.0);
  for (int64_t r = 0; r < p; ++r)
    for (int64_t c = r + 1; c < p; ++c) a[r * p + c] = a[c * p + r];
  // In-place Cholesky: a = L L^T.
  for (int64_t j = 0; j < p; ++j) {
    double d = a[j * p + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * p + k] * a[j * p + k];
    if (d <= 0.0) throw InvalidInputError("the least-squares system is singular; use more samples");
    const double l = std::sqrt(d);
    a[j * p + j] = l;
    for (int64_t i = j + 1; i < p; ++i) {
      double s = a[i * p + j];
      for (int64_t k = 0; k < j; ++k) s -= a[i * p + k] * a[j * p + k];
      a[i * p + j] = s / l;
    }
  }
  for (int64_t o = 0; o < n_outputs; ++o) {
    std::vector<double> z(p);
    for (int64_t i = 0; i < p; ++i) {
      double s = b[i * n_outputs + o];
      for (int64_t k = 0; k < i; ++k) s -= a[i * p + k] * z[k];
      z[i] = s / a[i * p + i];
    }
    for (int64_t i = p - 1; i >= 0; --i) {
      double s = z[i];
      for (int64_t k = i + 1; k < p; ++k) s -= a[k * p + i] * b[k * n_outputs + o];
      b[i * n_outputs + o] = s / a[i * p + i];
    }
  }
  return b;
}

}  // namespace attribfast::math
