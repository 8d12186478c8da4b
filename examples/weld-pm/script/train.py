"""A SageMaker script-mode training script, unchanged: takt runs it as a `command` step.

Reads the train and validation channels (CSV with a header), trains XGBoost, prints the
validation metric per round (takt turns the lines into a curve), writes metrics.json and
saves the model as `xgboost-model` in SM_MODEL_DIR.
"""
import argparse
import json
import os

import pandas as pd
import xgboost as xgb

parser = argparse.ArgumentParser()
parser.add_argument("--num_round", type=int, default=50)
parser.add_argument("--eta", type=float, default=0.3)
parser.add_argument("--max_depth", type=int, default=4)
parser.add_argument("--label", default="fails_within_24h")
args = parser.parse_args()

def load(channel):
    folder = os.environ["SM_CHANNEL_" + channel.upper()]
    return pd.read_csv(os.path.join(folder, channel + ".csv"))

train, valid = load("train"), load("validation")
drop = [args.label, "robot_serial", "timestamp", "plant", "tip_dress_count"]
features = [c for c in train.columns if c not in drop and pd.api.types.is_numeric_dtype(train[c])]
dtrain = xgb.DMatrix(train[features], label=train[args.label], feature_names=features)
dvalid = xgb.DMatrix(valid[features], label=valid[args.label], feature_names=features)
params = {"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "eta": args.eta,
          "max_depth": args.max_depth, "tree_method": "hist",
          "nthread": int(os.environ.get("SM_NUM_CPUS", "1")), "seed": 7}
history = {}
booster = xgb.train(params, dtrain, args.num_round, evals=[(dvalid, "validation")],
                    evals_result=history, verbose_eval=10)
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "metrics.json"), "w") as f:
    json.dump({"validation_auc": history["validation"]["auc"][-1],
               "validation_logloss_curve": history["validation"]["logloss"]}, f)
# JSON keeps the feature names (XGBoost's older binary format, e.g. a plain "xgboost-model",
# is recognised too, but carries no names).
booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "xgboost-model.json"))
print("saved", len(features), "features")
