#!/usr/bin/python3
"""XGBoost on the same features, folds and hyper-parameters as arenakit's GBDT (bench/features-bench.ts).

usage: /usr/bin/python3 bench/xgb_baseline.py FEATURES.csv PARAMS.json
FEATURES.csv: feature columns, then `label` (0=A, 1=B, 2=tie) and `fold`; PARAMS.json: arenakit GbdtOptions.
Prints one JSON line: {"logloss": mean out-of-fold log loss, "xgboost": version}.
Needs Debian's python3-xgboost (apt-get install -y python3-xgboost), run with the system /usr/bin/python3.
"""
import csv
import json
import math
import sys

import numpy as np
import xgboost as xgb


def main() -> None:
    feat_path, params_path = sys.argv[1], sys.argv[2]
    with open(feat_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        data = np.array([[float(v) for v in row] for row in reader])
    X, y, fold = data[:, :-2], data[:, -2].astype(int), data[:, -1].astype(int)
    o = json.load(open(params_path))
    params = {
        "objective": "multi:softprob",
        "num_class": 3,
        "eta": o["learningRate"],
        "max_depth": o["maxDepth"],
        "lambda": o["lambda"],
        "alpha": 0.0,
        "min_child_weight": o["minChildWeight"],
        "gamma": o["gamma"],
        "max_bin": o["maxBins"],
        "subsample": o["subsample"],
        "colsample_bytree": o["colsample"],
        "tree_method": "hist",
        "seed": o["seed"],
        "nthread": 1,
        "eval_metric": "mlogloss",
    }
    oof = np.zeros((len(y), 3))
    for k in sorted(set(fold.tolist())):
        tr, te = fold != k, fold == k
        share = np.bincount(y[tr], minlength=3) / tr.sum()
        # Same start as arenakit: logits = log class shares of the training rows.
        margin = np.log(np.maximum(share, 1e-12))
        dtr = xgb.DMatrix(X[tr], label=y[tr], base_margin=np.tile(margin, (tr.sum(), 1)), feature_names=header[:-2])
        dte = xgb.DMatrix(X[te], base_margin=np.tile(margin, (te.sum(), 1)), feature_names=header[:-2])
        booster = xgb.train(params, dtr, num_boost_round=o["rounds"])
        oof[te] = booster.predict(dte)
    p = np.clip(oof[np.arange(len(y)), y], 1e-15, 1 - 1e-15)
    print(json.dumps({"logloss": float(-np.mean(np.log(p))), "xgboost": xgb.__version__}))


if __name__ == "__main__":
    main()
