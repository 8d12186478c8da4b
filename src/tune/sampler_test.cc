#include "tune/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

namespace takt::tune {
namespace {

SearchSpace MustParse(const char* text) {
  auto s = SearchSpace::FromJson(Json::parse(text));
  EXPECT_TRUE(s.has_value()) << text << ": " << s.error().ToString();
  return std::move(s).value();
}

const char* kXgbSpace = R"({
  "eta": {"type": "loguniform", "low": 0.01, "high": 0.3},
  "max_depth": {"type": "int", "low": 3, "high": 10},
  "subsample": {"type": "uniform", "low": 0.5, "high": 1.0},
  "booster": {"type": "choice", "values": ["gbtree", "dart", true, 7]}
})";

// A shifted quadratic over a uniform, a loguniform and an int dimension, plus a
// choice where "c" is clearly better. Its minimum, 0, is at x = 1.3,
// lr = 10^-2.5, depth = 7, kind = "c".
const char* kBowlSpace = R"({
  "x": {"type": "uniform", "low": -5, "high": 5},
  "lr": {"type": "loguniform", "low": 0.0001, "high": 1},
  "depth": {"type": "int", "low": 1, "high": 12},
  "kind": {"type": "choice", "values": ["a", "b", "c", "d"]}
})";

double Bowl(const Json& p) {
  const double x = p["x"].get<double>();
  const double lr = std::log10(p["lr"].get<double>());
  const double depth = static_cast<double>(p["depth"].get<int64_t>());
  return (x - 1.3) * (x - 1.3) / 4 + (lr + 2.5) * (lr + 2.5) + 0.05 * (depth - 7) * (depth - 7) +
         (p["kind"] == "c" ? 0.0 : 2.0);
}

// Runs `budget` sequential trials; every proposal must be a point of `space`.
std::vector<Trial> Search(Sampler& sampler, const SearchSpace& space, int budget,
                          const std::function<double(const Json&)>& objective) {
  std::vector<Trial> trials;
  for (int i = 0; i < budget; ++i) {
    Json params = sampler.Propose(trials);
    auto valid = space.Validate(params);
    EXPECT_TRUE(valid.has_value()) << params.dump() << ": " << valid.error().ToString();
    for (const Dimension& d : space.dimensions()) {
      if (d.kind == Dimension::Kind::kInt) {
        EXPECT_TRUE(params[d.name].is_number_integer()) << params.dump();
      }
    }
    const double value = objective(params);
    trials.push_back({i, std::move(params), value});
  }
  return trials;
}

double Best(const std::vector<Trial>& trials, Direction direction) {
  double best = direction == Direction::kMinimize ? INFINITY : -INFINITY;
  for (const Trial& t : trials)
    best = direction == Direction::kMinimize ? std::min(best, *t.value) : std::max(best, *t.value);
  return best;
}

std::vector<Json> Proposals(Sampler& sampler, int n) {
  std::vector<Json> out;
  std::vector<Trial> none;
  for (int i = 0; i < n; ++i) out.push_back(sampler.Propose(none));
  return out;
}

TEST(RandomSamplerTest, StaysInsideTheSpaceWithTheRightTypes) {
  const SearchSpace space = MustParse(kXgbSpace);
  auto sampler = MakeRandomSampler(space, 1);
  std::set<std::string> boosters;
  std::set<int64_t> depths;
  for (const Json& p : Proposals(*sampler, 2000)) {
    ASSERT_TRUE(space.Validate(p).has_value()) << p.dump();
    ASSERT_TRUE(p["max_depth"].is_number_integer()) << p.dump();
    ASSERT_TRUE(p["eta"].is_number_float()) << p.dump();
    ASSERT_TRUE(p["subsample"].is_number_float()) << p.dump();
    depths.insert(p["max_depth"].get<int64_t>());
    boosters.insert(p["booster"].dump());
  }
  EXPECT_EQ(depths, (std::set<int64_t>{3, 4, 5, 6, 7, 8, 9, 10}));  // both ends included
  EXPECT_EQ(boosters, (std::set<std::string>{"\"gbtree\"", "\"dart\"", "true", "7"}));
}

TEST(RandomSamplerTest, LogUniformIsUniformInLogSpace) {
  const SearchSpace space = MustParse(R"({"lr": {"type": "loguniform", "low": 0.0001, "high": 1}})");
  auto sampler = MakeRandomSampler(space, 5);
  std::vector<double> logs;
  for (const Json& p : Proposals(*sampler, 4000)) logs.push_back(std::log10(p["lr"].get<double>()));
  std::sort(logs.begin(), logs.end());
  // Quantiles of U(-4, 0): q-th quantile at -4 + 4q. A uniform draw in linear
  // space would put 90% of the mass above 0.1 (log10 -1).
  for (double q : {0.1, 0.25, 0.5, 0.75, 0.9}) {
    EXPECT_NEAR(logs[static_cast<size_t>(q * logs.size())], -4 + 4 * q, 0.15) << "quantile " << q;
  }
}

TEST(RandomSamplerTest, ReproducibleWithTheSameSeedDifferentWithAnother) {
  const SearchSpace space = MustParse(kXgbSpace);
  auto a = MakeRandomSampler(space, 99);
  auto b = MakeRandomSampler(space, 99);
  auto c = MakeRandomSampler(space, 100);
  const auto pa = Proposals(*a, 20);
  EXPECT_EQ(pa, Proposals(*b, 20));
  EXPECT_NE(pa, Proposals(*c, 20));
}

TEST(TpeSamplerTest, StartsWithTheRandomSamplersProposals) {
  const SearchSpace space = MustParse(kBowlSpace);
  auto tpe = MakeTpeSampler(space, Direction::kMinimize, 8, /*startup_trials=*/5);
  auto random = MakeRandomSampler(space, 8);
  const std::vector<Trial> trials = Search(*tpe, space, 5, Bowl);
  for (const Trial& t : trials) EXPECT_EQ(t.params, random->Propose({}));
}

TEST(TpeSamplerTest, ReproducibleWithTheSameSeedDifferentWithAnother) {
  const SearchSpace space = MustParse(kBowlSpace);
  auto a = MakeTpeSampler(space, Direction::kMinimize, 3);
  auto b = MakeTpeSampler(space, Direction::kMinimize, 3);
  auto c = MakeTpeSampler(space, Direction::kMinimize, 4);
  const std::vector<Trial> ta = Search(*a, space, 30, Bowl);
  const std::vector<Trial> tb = Search(*b, space, 30, Bowl);
  const std::vector<Trial> tc = Search(*c, space, 30, Bowl);
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(ta[i].params, tb[i].params) << i;
    EXPECT_NE(ta[i].params, tc[i].params) << i;
  }
}

TEST(TpeSamplerTest, BeatsRandomSearchOnTheSameBudget) {
  // Ten seeds, best of 40 trials each. At the time of writing TPE averaged
  // about 0.42 against random search's 1.31 and won on 9 of the 10 seeds.
  const SearchSpace space = MustParse(kBowlSpace);
  double tpe_sum = 0, random_sum = 0;
  int tpe_wins = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto tpe = MakeTpeSampler(space, Direction::kMinimize, seed);
    auto random = MakeRandomSampler(space, seed + 1000);
    const double tpe_best = Best(Search(*tpe, space, 40, Bowl), Direction::kMinimize);
    const double random_best = Best(Search(*random, space, 40, Bowl), Direction::kMinimize);
    tpe_sum += tpe_best;
    random_sum += random_best;
    tpe_wins += tpe_best < random_best ? 1 : 0;
  }
  EXPECT_LT(tpe_sum, 0.5 * random_sum) << "TPE mean " << tpe_sum / 10 << ", random mean " << random_sum / 10;
  EXPECT_GE(tpe_wins, 7);
}

TEST(TpeSamplerTest, ConcentratesOnTheGoodChoice) {
  // Random search picks "c" a quarter of the time.
  const SearchSpace space = MustParse(kBowlSpace);
  int good = 0, total = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto tpe = MakeTpeSampler(space, Direction::kMinimize, seed);
    const std::vector<Trial> trials = Search(*tpe, space, 40, Bowl);
    for (size_t i = 20; i < trials.size(); ++i, ++total) good += trials[i].params["kind"] == "c" ? 1 : 0;
  }
  EXPECT_GT(good, total * 6 / 10) << good << " of " << total;
}

TEST(TpeSamplerTest, MaximizingMirrorsMinimizing) {
  const SearchSpace space = MustParse(kBowlSpace);
  auto negated = [](const Json& p) { return -Bowl(p); };
  double max_sum = 0, random_sum = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto minimizer = MakeTpeSampler(space, Direction::kMinimize, seed);
    auto maximizer = MakeTpeSampler(space, Direction::kMaximize, seed);
    auto random = MakeRandomSampler(space, seed + 1000);
    const std::vector<Trial> low = Search(*minimizer, space, 40, Bowl);
    const std::vector<Trial> high = Search(*maximizer, space, 40, negated);
    for (size_t i = 0; i < low.size(); ++i)
      ASSERT_EQ(low[i].params, high[i].params) << "seed " << seed << " trial " << i;
    max_sum += Best(high, Direction::kMaximize);
    random_sum += Best(Search(*random, space, 40, negated), Direction::kMaximize);
  }
  EXPECT_GT(max_sum, 0.5 * random_sum);  // both negative: closer to 0 is better

  // Told the wrong direction, it searches for the worst points.
  double wrong_sum = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto wrong = MakeTpeSampler(space, Direction::kMaximize, seed);
    wrong_sum += Best(Search(*wrong, space, 40, Bowl), Direction::kMinimize);
  }
  const double min_sum = -max_sum;  // the minimizer's proposals were the maximizer's
  EXPECT_GT(wrong_sum, 2 * min_sum);
}

// A one-dimensional history: finished trials on a grid with values (x - 0.2)^2.
std::vector<Trial> GridHistory(int n) {
  std::vector<Trial> trials;
  for (int i = 0; i < n; ++i) {
    const double x = (i + 0.5) / n;
    trials.push_back({i, Json{{"x", x}}, (x - 0.2) * (x - 0.2)});
  }
  return trials;
}

const char* kUnitSpace = R"({"x": {"type": "uniform", "low": 0, "high": 1}})";

TEST(TpeSamplerTest, PrunedTrialsCountAsBadWhateverTheirValue) {
  const SearchSpace space = MustParse(kUnitSpace);
  std::vector<Trial> history = GridHistory(12);
  // Pruned trials around 0.9 with values better than any finished one.
  for (int i = 0; i < 10; ++i)
    history.push_back({100 + i, Json{{"x", 0.85 + 0.01 * i}}, -1.0, /*pruned=*/true});
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto tpe = MakeTpeSampler(space, Direction::kMinimize, seed);
    const double x = tpe->Propose(history)["x"].get<double>();
    EXPECT_LT(x, 0.6) << "seed " << seed;
  }
}

TEST(TpeSamplerTest, RunningTrialsPushProposalsAway) {
  // Constant liar: running trials (no value yet) join the bad group, so a
  // proposal made while trials run at the point the sampler would pick keeps
  // away from it. The candidates drawn from l(x) are the same either way.
  const SearchSpace space = MustParse(kUnitSpace);
  const std::vector<Trial> finished = GridHistory(12);
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const double alone =
        MakeTpeSampler(space, Direction::kMinimize, seed)->Propose(finished)["x"].get<double>();
    std::vector<Trial> with_running = finished;
    for (int i = 0; i < 4; ++i) with_running.push_back({200 + i, Json{{"x", alone}}, std::nullopt});
    const double beside =
        MakeTpeSampler(space, Direction::kMinimize, seed)->Propose(with_running)["x"].get<double>();
    EXPECT_GT(std::abs(beside - alone), 0.05) << "seed " << seed << ": " << alone << " then " << beside;
  }
}

TEST(TpeSamplerTest, IgnoresTrialsThatAreNotPointsOfTheSpace) {
  const SearchSpace space = MustParse(kBowlSpace);
  auto tpe = MakeTpeSampler(space, Direction::kMinimize, 2, /*startup_trials=*/3);
  std::vector<Trial> history = Search(*tpe, space, 5, Bowl);
  history.push_back({10, Json::object(), 0.0});
  history.push_back({11, Json{{"x", 99}, {"lr", 0.1}, {"depth", 3}, {"kind", "a"}}, -5.0});
  history.push_back({12, Json::array(), -5.0});
  history.push_back({13, history[0].params, std::numeric_limits<double>::quiet_NaN()});
  for (int i = 0; i < 5; ++i) {
    Json p = tpe->Propose(history);
    EXPECT_TRUE(space.Validate(p).has_value()) << p.dump();
  }
}

TEST(TpeSamplerTest, ClampsStartupAndCandidates) {
  const SearchSpace space = MustParse(kBowlSpace);
  auto tpe = MakeTpeSampler(space, Direction::kMinimize, 6, /*startup_trials=*/-3, /*candidates=*/0);
  const std::vector<Trial> trials = Search(*tpe, space, 15, Bowl);  // validates every proposal
  EXPECT_EQ(trials.size(), 15u);
}

}  // namespace
}  // namespace takt::tune
