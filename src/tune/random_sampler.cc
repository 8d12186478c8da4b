// Independent uniform draws over a SearchSpace (see sampler.h).
#include <algorithm>
#include <cmath>

#include "tune/rng.h"
#include "tune/sampler.h"

namespace takt::tune {
namespace {

Json Draw(const Dimension& d, Rng& rng) {
  switch (d.kind) {
    case Dimension::Kind::kUniform:
      return std::clamp(d.low + rng.Uniform() * (d.high - d.low), d.low, d.high);
    case Dimension::Kind::kLogUniform: {
      const double lo = std::log(d.low);
      const double hi = std::log(d.high);
      return std::clamp(std::exp(lo + rng.Uniform() * (hi - lo)), d.low, d.high);
    }
    case Dimension::Kind::kInt: {
      const auto low = static_cast<int64_t>(d.low);
      const auto span = static_cast<uint64_t>(static_cast<int64_t>(d.high) - low) + 1;
      return low + static_cast<int64_t>(rng.Below(span));
    }
    case Dimension::Kind::kChoice:
      return d.values[rng.Below(d.values.size())];
  }
  return nullptr;
}

class RandomSampler : public Sampler {
 public:
  RandomSampler(const SearchSpace& space, uint64_t seed) : space_(space), rng_(seed) {}

  Json Propose(const std::vector<Trial>& /*history*/) override {
    Json point = Json::object();
    for (const Dimension& d : space_.dimensions()) point[d.name] = Draw(d, rng_);
    return point;
  }

 private:
  SearchSpace space_;
  Rng rng_;
};

}  // namespace

std::unique_ptr<Sampler> MakeRandomSampler(const SearchSpace& space, uint64_t seed) {
  return std::make_unique<RandomSampler>(space, seed);
}

}  // namespace takt::tune
