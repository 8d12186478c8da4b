#include "ml/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace takt::ml {
namespace {

bool Positive(float label) { return label > 0.5f; }

// Scores as sort keys: NaN ranks lowest (and keeps the sort well-defined).
std::vector<float> SortKeys(const std::vector<float>& scores) {
  std::vector<float> keys(scores);
  for (float& k : keys) {
    if (std::isnan(k)) k = -std::numeric_limits<float>::infinity();
  }
  return keys;
}

}  // namespace

double RocAuc(const std::vector<float>& scores, const std::vector<float>& labels) {
  if (scores.size() != labels.size()) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<float> key = SortKeys(scores);
  const size_t n = key.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] < key[b]; });
  // Mann-Whitney U: the sum of the positives' ranks (1-based, ties averaged).
  double positive_rank_sum = 0;
  int64_t positives = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && key[order[j]] == key[order[i]]) ++j;
    const double rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k) {
      if (Positive(labels[order[k]])) {
        positive_rank_sum += rank;
        ++positives;
      }
    }
    i = j;
  }
  const int64_t negatives = static_cast<int64_t>(n) - positives;
  if (positives == 0 || negatives == 0) return 0.5;
  const double p = static_cast<double>(positives);
  return (positive_rank_sum - p * (p + 1) / 2.0) / (p * static_cast<double>(negatives));
}

double PrAuc(const std::vector<float>& scores, const std::vector<float>& labels) {
  if (scores.size() != labels.size()) return std::numeric_limits<double>::quiet_NaN();
  const int64_t positives = std::count_if(labels.begin(), labels.end(), Positive);
  if (positives == 0) return 0.0;
  const std::vector<float> key = SortKeys(scores);
  const size_t n = key.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] > key[b]; });
  double ap = 0;
  int64_t tp = 0;
  int64_t seen = 0;
  double last_recall = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && key[order[j]] == key[order[i]]) {
      tp += Positive(labels[order[j]]) ? 1 : 0;
      ++j;
    }
    seen += static_cast<int64_t>(j - i);
    const double recall = static_cast<double>(tp) / static_cast<double>(positives);
    const double precision = static_cast<double>(tp) / static_cast<double>(seen);
    ap += (recall - last_recall) * precision;
    last_recall = recall;
    i = j;
  }
  return ap;
}

ThresholdMetrics AtThreshold(const std::vector<float>& scores, const std::vector<float>& labels,
                             double threshold) {
  ThresholdMetrics m;
  const size_t n = std::min(scores.size(), labels.size());
  for (size_t i = 0; i < n; ++i) {
    const bool predicted = static_cast<double>(scores[i]) >= threshold;
    const bool actual = Positive(labels[i]);
    if (predicted && actual) {
      ++m.tp;
    } else if (predicted) {
      ++m.fp;
    } else if (actual) {
      ++m.fn;
    } else {
      ++m.tn;
    }
  }
  auto ratio = [](int64_t a, int64_t b) {
    return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
  };
  m.precision = ratio(m.tp, m.tp + m.fp);
  m.recall = ratio(m.tp, m.tp + m.fn);
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
  m.accuracy = ratio(m.tp + m.tn, static_cast<int64_t>(n));
  return m;
}

}  // namespace takt::ml
