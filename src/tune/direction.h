// File: tune/direction.h
//
// Whether a tuning objective is minimised (losses, errors) or maximised
// (AUC, accuracy), from a spec's `direction:` or guessed from a metric name.
//
//   TAKT_ASSIGN_OR_RETURN(Direction d, ParseDirection("maximize"));
//   DirectionOfMetric("holdout_auc");          // kMaximize
//   DirectionOfMetric("validation_0-logloss");  // kMinimize
//
// Thread safety: free functions over values.
#pragma once

#include <optional>
#include <string_view>

#include "core/result.h"

namespace takt::tune {

enum class Direction { kMinimize, kMaximize };

// "minimize" / "maximize", also "min" / "max", case-insensitive. Anything else
// is InvalidArgument naming the text.
Result<Direction> ParseDirection(std::string_view text);

// The direction of a well-known metric, case-insensitive. The name may carry a
// prefix ending in '-' or '_' ("holdout_", "validation-", "validation_0-") and
// an XGBoost parameter after '@' ("error@0.7", "ndcg@10").
//   minimize: logloss, mlogloss, rmse, rmsle, mse, mae, mape, error, merror,
//             nloglik ("poisson-nloglik"), deviance, loss
//   maximize: auc, aucpr, pr_auc, accuracy, f1, precision, recall, map, ndcg, r2
// nullopt for anything else: the spec has to say.
std::optional<Direction> DirectionOfMetric(std::string_view metric);

// "minimize" / "maximize".
std::string_view DirectionName(Direction direction);

}  // namespace takt::tune
