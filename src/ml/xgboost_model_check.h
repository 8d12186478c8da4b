// File: ml/xgboost_model_check.h
//
// Internal to ml: the gate in front of XGBoost's model parsers. XGBoost 1.7
// trusts a model's structure when it predicts: a tree whose children form a
// cycle loops forever, a child or feature index out of range reads outside its
// buffers, and its UBJSON reader crashes on some corrupt input. Model files are
// untrusted input (uploads, artifacts), so every model is parsed here first
// (JSON and UBJSON with nlohmann, depth-limited), checked, and handed to XGBoost
// only as the canonical JSON text of what was checked; the legacy binary
// format, which only XGBoost reads, has its length fields checked first.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace takt::ml::internal {

// The model as JSON text if `bytes` are XGBoost JSON or UBJSON, else NotFound
// (perhaps the legacy binary format, which only XGBoost can read). Malformed
// JSON or UBJSON is InvalidArgument.
Result<std::string> ModelBytesToJson(std::string_view bytes);

// Checks the length fields of XGBoost's legacy binary format (gbtree and dart
// models: header, names, trees, tree groups, attributes) against the bytes at
// hand, so that XGBoost's reader, which allocates what a length field says
// before it reads, never allocates more than the input could hold. The trees
// themselves are checked afterwards, as JSON. InvalidArgument if corrupt.
Status CheckLegacyBinary(std::string_view bytes);

// Checks an XGBoost JSON model (as XGBoost 1.7 writes it): gbtree, dart or
// gblinear; every tree's arrays as long as its node count; every node reached
// exactly once from the root; child indices in range; split features below
// num_feature; no categorical splits; tree groups below the output count.
// Returns the canonical JSON text to load. InvalidArgument naming the problem.
Result<std::string> CheckModelJson(std::string_view json_text);

}  // namespace takt::ml::internal
