// File: ml/metrics.h
//
// Quality metrics of a binary classifier's scores: the numbers the `evaluate`
// step records and the `condition` step compares (e.g. AUC >= 0.85).
// A label counts as positive when it is > 0.5; a NaN score ranks lowest.
// Pure functions: safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <vector>

namespace takt::ml {

// Area under the ROC curve (the probability that a random positive scores
// above a random negative); tied scores get their average rank. 0.5 when one
// class is missing; NaN when scores and labels differ in length.
double RocAuc(const std::vector<float>& scores, const std::vector<float>& labels);

// Area under the precision-recall curve as average precision: the sum over
// score thresholds (tied scores form one threshold) of precision times the
// gain in recall. 0 when there is no positive; NaN when the lengths differ.
double PrAuc(const std::vector<float>& scores, const std::vector<float>& labels);

// A row is predicted positive when its score >= threshold. Ratios whose
// denominator is 0 are 0. Rows beyond the shorter of the two vectors are ignored.
struct ThresholdMetrics {
  double precision = 0, recall = 0, f1 = 0, accuracy = 0;
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
};
ThresholdMetrics AtThreshold(const std::vector<float>& scores, const std::vector<float>& labels,
                             double threshold);

}  // namespace takt::ml
