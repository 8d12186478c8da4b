"""{{project}}: an XGBoost binary classifier in SageMaker script mode.

takt runs it as the `train` step of pipeline-script.yaml, in a sandbox, with the same
contract SageMaker gives a training script, so it also runs there unchanged:

  SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION  folders holding the input tables as CSV with a header
  SM_MODEL_DIR                             where the model goes (xgboost-model.json)
  SM_OUTPUT_DATA_DIR                       other outputs; metrics.json is read back as the step's metrics
  SM_NUM_CPUS                              the CPUs the step was given (resources.cpus)
  hyperparameters                          as --name value arguments (also SM_HP_<NAME>)

It prints the validation metrics per round; the step's metrics.regex turns those lines into a
curve (`takt run plot RUN --out curve.png`). Try it locally on an export of the split:

  SM_CHANNEL_TRAIN=data/train SM_CHANNEL_VALIDATION=data/validation SM_MODEL_DIR=out \
  SM_OUTPUT_DATA_DIR=out python3 script/train.py --num_round 20
"""
import argparse
import glob
import json
import os

import pandas as pd
import xgboost as xgb


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_round", type=int, default=100)
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--min_child_weight", type=float, default=5)
    parser.add_argument("--label", default="fails_within_24h")
    parser.add_argument("--drop", default="", help="comma-separated columns that are not features")
    return parser.parse_args()


def load(channel):
    """All CSV files of a channel folder, as one table."""
    folder = os.environ["SM_CHANNEL_" + channel.upper()]
    files = sorted(glob.glob(os.path.join(folder, "*.csv")))
    if not files:
        raise SystemExit("channel %s: no CSV file in %s" % (channel, folder))
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def main():
    args = parse_args()
    train, valid = load("train"), load("validation")
    drop = {args.label} | {c for c in args.drop.split(",") if c}
    # Numeric columns only: identifiers, strings and timestamps are not features.
    features = [c for c in train.columns if c not in drop and pd.api.types.is_numeric_dtype(train[c])]
    print("training on %d rows, %d features; validating on %d rows" % (len(train), len(features), len(valid)))
    dtrain = xgb.DMatrix(train[features], label=train[args.label], feature_names=features)
    dvalid = xgb.DMatrix(valid[features], label=valid[args.label], feature_names=features)
    params = {
        "objective": "binary:logistic",
        "eval_metric": ["auc", "logloss"],
        "tree_method": "hist",
        "eta": args.eta,
        "max_depth": args.max_depth,
        "min_child_weight": args.min_child_weight,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "nthread": int(os.environ.get("SM_NUM_CPUS", "1")),
        "seed": 7,
    }
    history = {}
    booster = xgb.train(params, dtrain, args.num_round, evals=[(dvalid, "validation")],
                        evals_result=history, verbose_eval=1)
    metrics = {
        "validation_auc": history["validation"]["auc"][-1],
        "validation_logloss": history["validation"]["logloss"][-1],
    }
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "metrics.json"), "w") as f:
        json.dump(metrics, f)
    # JSON keeps the feature names, which the evaluate step and the endpoint use.
    booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "xgboost-model.json"))
    print("saved the model: %d features, validation auc %.4f" % (len(features), metrics["validation_auc"]))


if __name__ == "__main__":
    main()
