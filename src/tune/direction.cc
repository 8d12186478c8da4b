#include "tune/direction.h"

#include <array>
#include <string>

namespace takt::tune {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

struct KnownMetric {
  std::string_view name;
  Direction direction;
};

constexpr std::array<KnownMetric, 22> kKnownMetrics = {{
    {"logloss", Direction::kMinimize},  {"mlogloss", Direction::kMinimize},
    {"rmse", Direction::kMinimize},     {"rmsle", Direction::kMinimize},
    {"mse", Direction::kMinimize},      {"mae", Direction::kMinimize},
    {"mape", Direction::kMinimize},     {"error", Direction::kMinimize},
    {"merror", Direction::kMinimize},   {"nloglik", Direction::kMinimize},
    {"deviance", Direction::kMinimize}, {"loss", Direction::kMinimize},
    {"auc", Direction::kMaximize},      {"aucpr", Direction::kMaximize},
    {"pr_auc", Direction::kMaximize},   {"accuracy", Direction::kMaximize},
    {"f1", Direction::kMaximize},       {"precision", Direction::kMaximize},
    {"recall", Direction::kMaximize},   {"map", Direction::kMaximize},
    {"ndcg", Direction::kMaximize},     {"r2", Direction::kMaximize},
}};

}  // namespace

Result<Direction> ParseDirection(std::string_view text) {
  const std::string s = Lower(text);
  if (s == "minimize" || s == "min") return Direction::kMinimize;
  if (s == "maximize" || s == "max") return Direction::kMaximize;
  return InvalidArgument("direction: \"" + std::string(text) + "\" is not minimize or maximize");
}

std::optional<Direction> DirectionOfMetric(std::string_view metric) {
  std::string s = Lower(metric);
  if (const size_t at = s.find('@'); at != std::string::npos) s.resize(at);
  // The longest known name that is the whole metric or follows a separator:
  // "holdout_pr_auc" is pr_auc, not auc; "mlogloss" is not logloss.
  const KnownMetric* best = nullptr;
  for (const KnownMetric& known : kKnownMetrics) {
    if (!s.ends_with(known.name)) continue;
    const size_t start = s.size() - known.name.size();
    if (start > 0 && s[start - 1] != '-' && s[start - 1] != '_') continue;
    if (best == nullptr || known.name.size() > best->name.size()) best = &known;
  }
  if (best == nullptr) return std::nullopt;
  return best->direction;
}

std::string_view DirectionName(Direction direction) {
  return direction == Direction::kMinimize ? "minimize" : "maximize";
}

}  // namespace takt::tune
