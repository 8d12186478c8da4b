// File: registry/testing_xgboost.h
//
// For tests only: models "trained elsewhere", made at test time by Debian's
// real XGBoost Python package (/usr/bin/python3), never committed binaries.
// Header-only, so the registry, route and end-to-end tests share it.
#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace takt::registry::testing {

// Writes into `dir`: weld.json and weld.ubj (the same booster, 3 named
// features force_kn, current_ka, temp_c), unnamed.json (4 unnamed features)
// and sample.csv (5 rows of the 3 features). Returns "" or what failed.
inline std::string TrainNotebookModels(const std::string& dir) {
  const std::string script = dir + "/train.py";
  std::ofstream(script) << R"(import sys
import numpy as np
import xgboost as xgb
out = sys.argv[1]
rng = np.random.RandomState(7)
X = rng.rand(300, 3)
y = ((X[:, 0] > 0.5) & (X[:, 2] < 0.8)).astype(int)
d = xgb.DMatrix(X, label=y, feature_names=["force_kn", "current_ka", "temp_c"])
b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}, d, 8)
b.save_model(out + "/weld.json")
b.save_model(out + "/weld.ubj")
X4 = rng.rand(200, 4)
u = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X4, label=(X4[:, 1] > 0.3).astype(int)), 4)
u.save_model(out + "/unnamed.json")
with open(out + "/sample.csv", "w") as f:
    f.write("temp_c,force_kn,current_ka\n")
    for r in X[:5]:
        f.write("%r,%r,%r\n" % (r[2], r[0], r[1]))
)";
  const std::string cmd = "/usr/bin/python3 " + script + " " + dir + " 2>" + dir + "/train.err";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream err(dir + "/train.err");
    std::stringstream ss;
    ss << err.rdbuf();
    return "training with /usr/bin/python3 + xgboost failed: " + ss.str();
  }
  return "";
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace takt::registry::testing
