// Tree-structured Parzen estimator (see sampler.h for the algorithm).
#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "tune/rng.h"
#include "tune/sampler.h"

namespace takt::tune {
namespace {

constexpr double kGamma = 0.1;
constexpr int kMaxGood = 25;
constexpr double kPriorWeight = 1.0;
constexpr double kChoicePseudoCount = 1.0;
// Keeps log(l / g) finite; the prior kernel keeps real densities far above it.
constexpr double kTinyDensity = 1e-300;

double Phi(double z) { return 0.5 * std::erfc(-z / std::numbers::sqrt2); }

double Gaussian(double z) { return std::exp(-0.5 * z * z) / std::sqrt(2.0 * std::numbers::pi); }

// The interval a numeric dimension's kernels live on.
struct Axis {
  double lo;
  double hi;
};

Axis AxisOf(const Dimension& d) {
  switch (d.kind) {
    case Dimension::Kind::kLogUniform:
      return {std::log(d.low), std::log(d.high)};
    case Dimension::Kind::kInt:
      return {d.low - 0.5, d.high + 0.5};
    default:
      return {d.low, d.high};
  }
}

// A validated value of a numeric dimension, on its axis.
double ToAxis(const Dimension& d, const Json& v) {
  const double x = v.get<double>();
  return d.kind == Dimension::Kind::kLogUniform ? std::log(x) : x;
}

Json FromAxis(const Dimension& d, double x) {
  switch (d.kind) {
    case Dimension::Kind::kLogUniform:
      return std::clamp(std::exp(x), d.low, d.high);
    case Dimension::Kind::kInt:
      return static_cast<int64_t>(std::clamp(std::round(x), d.low, d.high));
    default:
      return std::clamp(x, d.low, d.high);
  }
}

// A mixture of Gaussians truncated to an axis: one kernel per observation and
// a broad prior kernel, bandwidths from neighbour distances.
class Parzen {
 public:
  Parzen(std::vector<double> points, Axis axis) : axis_(axis) {
    const double range = axis.hi - axis.lo;
    const double prior_mu = 0.5 * (axis.lo + axis.hi);
    const double min_sigma = range / std::min(100.0, 1.0 + static_cast<double>(points.size()));

    struct Kernel {
      double mu;
      bool prior;
    };
    std::vector<Kernel> sorted;
    sorted.reserve(points.size() + 1);
    for (double p : points) sorted.push_back({p, false});
    sorted.push_back({prior_mu, true});
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const Kernel& a, const Kernel& b) { return a.mu < b.mu; });

    for (size_t i = 0; i < sorted.size(); ++i) {
      double sigma = range;
      if (!sorted[i].prior) {
        double gap = 0;
        if (i > 0) gap = std::max(gap, sorted[i].mu - sorted[i - 1].mu);
        if (i + 1 < sorted.size()) gap = std::max(gap, sorted[i + 1].mu - sorted[i].mu);
        sigma = std::clamp(gap, min_sigma, range);
      }
      mu_.push_back(sorted[i].mu);
      sigma_.push_back(sigma);
      weight_.push_back(sorted[i].prior ? kPriorWeight : 1.0);
      norm_.push_back(Phi((axis.hi - sorted[i].mu) / sigma) - Phi((axis.lo - sorted[i].mu) / sigma));
    }
    total_weight_ = std::accumulate(weight_.begin(), weight_.end(), 0.0);
  }

  double Sample(Rng& rng) const {
    double u = rng.Uniform() * total_weight_;
    size_t k = 0;
    while (k + 1 < weight_.size() && u >= weight_[k]) u -= weight_[k++];
    // Every centre lies on the axis and no width exceeds its length, so at
    // least a third of each kernel's mass is on the axis: rejection is cheap.
    for (int attempt = 0; attempt < 200; ++attempt) {
      const double x = mu_[k] + sigma_[k] * rng.Normal();
      if (x >= axis_.lo && x <= axis_.hi) return x;
    }
    return mu_[k];
  }

  double Density(double x) const {
    double sum = 0;
    for (size_t k = 0; k < mu_.size(); ++k) {
      sum += weight_[k] * Gaussian((x - mu_[k]) / sigma_[k]) / (sigma_[k] * norm_[k]);
    }
    return std::max(sum / total_weight_, kTinyDensity);
  }

  // The probability of [lo, hi] (within the axis).
  double Mass(double lo, double hi) const {
    double sum = 0;
    for (size_t k = 0; k < mu_.size(); ++k) {
      sum += weight_[k] * (Phi((hi - mu_[k]) / sigma_[k]) - Phi((lo - mu_[k]) / sigma_[k])) / norm_[k];
    }
    return std::max(sum / total_weight_, kTinyDensity);
  }

 private:
  Axis axis_;
  std::vector<double> mu_, sigma_, weight_, norm_;
  double total_weight_ = 0;
};

class TpeSampler : public Sampler {
 public:
  TpeSampler(const SearchSpace& space, Direction direction, uint64_t seed, int startup_trials, int candidates)
      : space_(space),
        direction_(direction),
        startup_(MakeRandomSampler(space, seed)),
        rng_(seed ^ 0x7470652d73616d70ULL),  // "tpe-samp": a stream apart from the startup one
        startup_trials_(std::max(startup_trials, 1)),
        candidates_(std::max(candidates, 1)) {}

  Json Propose(const std::vector<Trial>& history) override {
    std::vector<const Trial*> finished;  // unpruned, finite value
    std::vector<const Trial*> bad;       // pruned, non-finite or running
    for (const Trial& t : history) {
      if (!space_.Validate(t.params)) continue;
      const bool has_value = t.value.has_value() && std::isfinite(*t.value);
      if (has_value && !t.pruned) {
        finished.push_back(&t);
      } else {
        bad.push_back(&t);
      }
    }
    size_t outcomes = finished.size();
    for (const Trial* t : bad) outcomes += t->pruned || t->value.has_value() ? 1 : 0;
    if (finished.empty() || outcomes < static_cast<size_t>(startup_trials_))
      return startup_->Propose(history);

    std::stable_sort(finished.begin(), finished.end(), [this](const Trial* a, const Trial* b) {
      return direction_ == Direction::kMinimize ? *a->value < *b->value : *a->value > *b->value;
    });
    size_t n_good = static_cast<size_t>(std::ceil(kGamma * static_cast<double>(outcomes)));
    n_good = std::clamp<size_t>(n_good, 1, std::min<size_t>(kMaxGood, finished.size()));
    std::vector<const Trial*> good(finished.begin(), finished.begin() + static_cast<ptrdiff_t>(n_good));
    bad.insert(bad.end(), finished.begin() + static_cast<ptrdiff_t>(n_good), finished.end());

    Json point = Json::object();
    for (const Dimension& d : space_.dimensions()) {
      point[d.name] =
          d.kind == Dimension::Kind::kChoice ? ProposeChoice(d, good, bad) : ProposeNumber(d, good, bad);
    }
    return point;
  }

 private:
  Json ProposeNumber(const Dimension& d, const std::vector<const Trial*>& good,
                     const std::vector<const Trial*>& bad) {
    const Axis axis = AxisOf(d);
    auto points = [&](const std::vector<const Trial*>& trials) {
      std::vector<double> out;
      out.reserve(trials.size());
      for (const Trial* t : trials) out.push_back(ToAxis(d, t->params[d.name]));
      return out;
    };
    const Parzen l(points(good), axis);
    const Parzen g(points(bad), axis);
    double best_x = 0;
    double best_score = -INFINITY;
    for (int i = 0; i < candidates_; ++i) {
      double x = l.Sample(rng_);
      double score;
      if (d.kind == Dimension::Kind::kInt) {
        x = std::clamp(std::round(x), d.low, d.high);
        score = std::log(l.Mass(x - 0.5, x + 0.5)) - std::log(g.Mass(x - 0.5, x + 0.5));
      } else {
        score = std::log(l.Density(x)) - std::log(g.Density(x));
      }
      if (score > best_score) {
        best_score = score;
        best_x = x;
      }
    }
    return FromAxis(d, best_x);
  }

  Json ProposeChoice(const Dimension& d, const std::vector<const Trial*>& good,
                     const std::vector<const Trial*>& bad) {
    auto weights = [&](const std::vector<const Trial*>& trials) {
      std::vector<double> w(d.values.size(), kChoicePseudoCount);
      for (const Trial* t : trials) {
        const Json& v = t->params[d.name];
        for (size_t k = 0; k < d.values.size(); ++k) {
          if (d.values[k] == v) {
            w[k] += 1;
            break;
          }
        }
      }
      const double total = std::accumulate(w.begin(), w.end(), 0.0);
      for (double& x : w) x /= total;
      return w;
    };
    const std::vector<double> l = weights(good);
    const std::vector<double> g = weights(bad);
    size_t best = 0;
    double best_score = -INFINITY;
    for (int i = 0; i < candidates_; ++i) {
      double u = rng_.Uniform();
      size_t k = 0;
      while (k + 1 < l.size() && u >= l[k]) u -= l[k++];
      const double score = std::log(l[k]) - std::log(g[k]);
      if (score > best_score) {
        best_score = score;
        best = k;
      }
    }
    return d.values[best];
  }

  SearchSpace space_;
  Direction direction_;
  std::unique_ptr<Sampler> startup_;
  Rng rng_;
  int startup_trials_;
  int candidates_;
};

}  // namespace

std::unique_ptr<Sampler> MakeTpeSampler(const SearchSpace& space, Direction direction, uint64_t seed,
                                        int startup_trials, int candidates) {
  return std::make_unique<TpeSampler>(space, direction, seed, startup_trials, candidates);
}

}  // namespace takt::tune
