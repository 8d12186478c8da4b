"""The Flask peer of bench/serving/run.py: what `mlflow models serve` effectively does.

Run by gunicorn (sync workers), each worker loads the model once at import.
POST /invocations {"instances": [[32 floats], ...]} -> {"predictions": [p, ...]}
GET /ping -> 200 (readiness). The model path comes from BENCH_MODEL.
"""
import os

import numpy as np
import xgboost as xgb
from flask import Flask, jsonify, request

booster = xgb.Booster()
booster.load_model(os.environ["BENCH_MODEL"])
booster.set_param({"nthread": 1})

app = Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    return "", 200


@app.route("/invocations", methods=["POST"])
def invocations():
    payload = request.get_json(force=True)
    x = np.array(payload["instances"], dtype=np.float64)
    preds = booster.inplace_predict(x)
    return jsonify({"predictions": [float(p) for p in preds]})
