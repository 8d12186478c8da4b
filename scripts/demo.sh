#!/usr/bin/env bash
# The welding-robot showcase, end to end, on embedded defaults:
# simulate telemetry → ingest (robot_serial tagged pii) → a project with a
# grant that pseudonymises robot_serial → pipeline (reads with the project's
# grant: features, XGBoost, evaluate, gate, register) → approval by someone
# else → event → dev endpoint → predictions → lineage and the audit of reads.
#
# Environment:
#   TAKT_DEMO_DIR   where the demo keeps its data dir and files (default ./demo-data; wiped first)
#   TAKT_DEMO_PORT  server port (default 8080; 0 picks a free one)
#   TAKT_DEMO_EXIT  1: stop the server and exit after the slice (for CI and tests)
#   TAKT_BIN        the takt binary (default build/takt)
set -euo pipefail
cd "$(dirname "$0")/.."

TAKT=${TAKT_BIN:-$PWD/build/takt}
DIR=${TAKT_DEMO_DIR:-$PWD/demo-data}
PORT=${TAKT_DEMO_PORT:-8080}
ROBOTS=${TAKT_DEMO_ROBOTS:-200}
[ -x "$TAKT" ] || { echo "demo: $TAKT not found; run 'make demo' (it builds first)" >&2; exit 1; }

bold() { if [ -t 1 ]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }
json_field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

rm -rf "$DIR"
mkdir -p "$DIR"
export TAKT_DATA_DIR="$DIR/data"
export TAKT_CREDENTIALS_FILE="$DIR/credentials"
unset TAKT_TOKEN TAKT_URL

bold "1. takt init: data directory, master key (0600), admin principal"
ADMIN=$("$TAKT" init -o json | json_field "['token']")
echo "initialised $TAKT_DATA_DIR (admin token kept in this shell only)"

bold "2. takt server on 127.0.0.1:$PORT (SQLite metadata, encrypted artifacts, local workers)"
"$TAKT" server --port "$PORT" --log-level warn > "$DIR/server.out" 2> "$DIR/server.log" &
SERVER=$!
cleanup() { if [ "${TAKT_DEMO_EXIT:-0}" = 1 ] || [ "${1:-}" = fail ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi; }
trap 'cleanup fail' ERR INT
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$DIR/server.out" 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { echo "demo: the server did not start:" >&2; cat "$DIR/server.log" >&2; exit 1; }
  sleep 0.1
done
export TAKT_URL=$(sed -n 's/^listening on //p' "$DIR/server.out")
echo "server up at $TAKT_URL (pid $SERVER, log $DIR/server.log)"

bold "3. principals: a data engineer, a data scientist (who also approves), two approvers, an ML engineer, a plant app"
DANA=$(TAKT_TOKEN=$ADMIN "$TAKT" principal create dana --persona data-engineer -o json | json_field "['token']")
SAM=$(TAKT_TOKEN=$ADMIN "$TAKT" principal create sam --persona data-scientist --persona approver -o json | json_field "['token']")
ADA=$(TAKT_TOKEN=$ADMIN "$TAKT" principal create ada --persona approver -o json | json_field "['token']")
BOB=$(TAKT_TOKEN=$ADMIN "$TAKT" principal create bob --persona approver -o json | json_field "['token']")
EVE=$(TAKT_TOKEN=$ADMIN "$TAKT" principal create eve --persona ml-engineer -o json | json_field "['token']")
MES=$(TAKT_TOKEN=$ADMIN "$TAKT" principal create plant-mes --service --persona service -o json | json_field "['token']")
TAKT_TOKEN=$ADMIN "$TAKT" principal list

bold "4. takt sim weld: hourly telemetry of $ROBOTS welding-gun robots in 3 plants over 30 days"
"$TAKT" sim weld --robots "$ROBOTS" --plants 3 --days 30 --seed 7 -o "$DIR/telemetry.csv"

bold "5. dana ingests it as dataset weld-telemetry (streamed, versioned, encrypted; robot_serial tagged pii)"
TAKT_TOKEN=$DANA "$TAKT" dataset ingest weld-telemetry "$DIR/telemetry.csv" --tag robot_serial=pii \
  --description "welding-gun robot telemetry, hourly"
TAKT_TOKEN=$DANA "$TAKT" dataset tag weld-telemetry telemetry
TAKT_TOKEN=$DANA "$TAKT" dataset show weld-telemetry
TAKT_TOKEN=$DANA "$TAKT" dataset stats weld-telemetry

bold "6. the use case: project weld-pm (members sam, eve; its pipelines read as svc.weld-pm)"
TAKT_TOKEN=$ADMIN "$TAKT" project create weld-pm --member sam --member eve --description "predictive maintenance of welding guns"
echo "sam, before any grant (default deny):"
if TAKT_TOKEN=$SAM "$TAKT" dataset head weld-telemetry -n 3 2> "$DIR/denied.txt"; then
  echo "demo: sam read the dataset without a grant; he must not" >&2; exit 1
fi
cat "$DIR/denied.txt"

bold "7. dana shares weld-telemetry with the project, every pii column pseudonymised"
TAKT_TOKEN=$DANA "$TAKT" grant create --to project:weld-pm --dataset weld-telemetry --mask tag:pii=hash \
  --note "weld-pm trains on all plants; serials pseudonymised"
TAKT_TOKEN=$DANA "$TAKT" grant list --dataset weld-telemetry
TAKT_TOKEN=$SAM "$TAKT" dataset access weld-telemetry
echo "the data engineer's view (owner):"
TAKT_TOKEN=$DANA "$TAKT" dataset head weld-telemetry -n 3 --columns robot_serial,plant,timestamp,motor_current_a
echo "the data scientist's view (project weld-pm):"
TAKT_TOKEN=$SAM "$TAKT" dataset head weld-telemetry -n 3 --columns robot_serial,plant,timestamp,motor_current_a

bold "8. sam runs the pipeline: features → train (XGBoost) → evaluate (time holdout) → gate (AUC) → register"
TAKT_TOKEN=$SAM "$TAKT" pipeline run examples/weld-pm/pipeline.yaml
TAKT_TOKEN=$SAM "$TAKT" model show weld-pm

bold "8b. experiments: the same use case with an unchanged SageMaker script-mode script (sandboxed), and a TPE search"
TAKT_TOKEN=$SAM "$TAKT" pipeline run examples/weld-pm/pipeline-script.yaml -p eta=0.2 -p num_round=30
TAKT_TOKEN=$SAM "$TAKT" pipeline run examples/weld-pm/pipeline-tune.yaml -p trials=6
RUNS=$(TAKT_TOKEN=$SAM "$TAKT" run list -o json | /usr/bin/python3 -c \
  "import json,sys; print(' '.join([r['id'] for r in json.load(sys.stdin) if r.get('kind','pipeline')=='pipeline'][:3]))")
# shellcheck disable=SC2086
TAKT_TOKEN=$SAM "$TAKT" run compare $RUNS --plot "$DIR/compare.svg"
TAKT_TOKEN=$SAM "$TAKT" run search --metric auc --min 0.8
echo "a comparison chart: $DIR/compare.svg"

bold "9. sam may not approve a model from his own run"
if TAKT_TOKEN=$SAM "$TAKT" model approve weld-pm 1 2> "$DIR/refused.txt"; then
  echo "demo: the author's approval was accepted; it must not be" >&2; exit 1
fi
cat "$DIR/refused.txt"

bold "10. ada approves: the event io.takt.model.version.approved starts the release to dev"
TAKT_TOKEN=$ADA "$TAKT" model approve weld-pm 1 --comment "holdout AUC and recall look right"
for _ in $(seq 1 100); do
  TAKT_TOKEN=$ADA "$TAKT" endpoint list -o json | grep -q '"InService"' && break
  sleep 0.1
done
TAKT_TOKEN=$ADA "$TAKT" endpoint list
TAKT_TOKEN=$ADMIN "$TAKT" event list

bold "11. the robots at highest risk now, scored by endpoint weld-pm-dev (SageMaker-style invocations)"
RUN=$(TAKT_TOKEN=$SAM "$TAKT" run list -o json | /usr/bin/python3 -c \
  "import json,sys; print([r['id'] for r in json.load(sys.stdin) if r['pipeline']=='weld-pm'][0])")
TAKT_TOKEN=$SAM "$TAKT" run export "$RUN" features/latest --file "$DIR/latest.csv"
TAKT_TOKEN=$SAM "$TAKT" endpoint invoke weld-pm-dev --file "$DIR/latest.csv" --id-column robot_serial --id-column plant --top 10

bold "12. the same endpoint through the Open Inference Protocol (curl)"
NF=$(TAKT_TOKEN=$SAM "$TAKT" endpoint show weld-pm-dev -o json | json_field "['feature_names'].__len__()")
ROW=$(/usr/bin/python3 -c "print(','.join(['0']*$NF))")
curl -s -X POST "$TAKT_URL/v2/models/weld-pm-dev/infer" -H "Authorization: Bearer $SAM" \
  -H 'Content-Type: application/json' \
  -d "{\"id\":\"demo-1\",\"inputs\":[{\"name\":\"input-0\",\"shape\":[1,$NF],\"datatype\":\"FP32\",\"data\":[$ROW]}]}"
echo

bold "13. lineage: what data is behind the model serving weld-pm-dev, and what was made of weld-telemetry v1"
TAKT_TOKEN=$SAM "$TAKT" lineage endpoint:weld-pm-dev --up
TAKT_TOKEN=$SAM "$TAKT" lineage weld-telemetry@1 --down

bold "14. the audit log: every read of weld-telemetry with its columns, masks and rows; then everything else"
TAKT_TOKEN=$ADMIN "$TAKT" audit list --dataset weld-telemetry --limit 10
TAKT_TOKEN=$ADMIN "$TAKT" audit list --limit 12

bold "15. the release pipeline of weld-pm (examples/weld-pm/release.yaml): v1 serves dev, int waits for an approver"
TAKT_TOKEN=$EVE "$TAKT" release config put examples/weld-pm/release.yaml
TAKT_TOKEN=$EVE "$TAKT" release config show weld-pm
TAKT_TOKEN=$EVE "$TAKT" release wait weld-pm --version 1
TAKT_TOKEN=$EVE "$TAKT" release status weld-pm

bold "16. bob approves int; prod needs two approvers, never the author (sam is refused)"
TAKT_TOKEN=$BOB "$TAKT" release approve weld-pm --stage int --comment "dev smoke test and AUC fine"
TAKT_TOKEN=$EVE "$TAKT" release wait weld-pm --version 1
if TAKT_TOKEN=$SAM "$TAKT" release approve weld-pm --stage prod 2> "$DIR/refused.txt"; then
  echo "demo: the author approved his own release; he must not" >&2; exit 1
fi
cat "$DIR/refused.txt"
TAKT_TOKEN=$ADA "$TAKT" release approve weld-pm --stage prod --comment "int looked right for a day"
TAKT_TOKEN=$BOB "$TAKT" release approve weld-pm --stage prod --comment "agreed"
TAKT_TOKEN=$EVE "$TAKT" release wait weld-pm --version 1
TAKT_TOKEN=$EVE "$TAKT" release status weld-pm
echo "prod admits the plant's service identity, not people:"
curl -s -o /dev/null -w "plant-mes → weld-pm-prod: HTTP %{http_code}\n" -X POST "$TAKT_URL/endpoints/weld-pm-prod/invocations" \
  -H "Authorization: Bearer $MES" -H 'Content-Type: text/csv' --data-binary "$ROW"
curl -s -w "\n" -X POST "$TAKT_URL/endpoints/weld-pm-prod/invocations" \
  -H "Authorization: Bearer $EVE" -H 'Content-Type: text/csv' --data-binary "$ROW"
sleep 1
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
echo "what served weld-pm at $NOW, who approved it, from which run and data:"
TAKT_TOKEN=$SAM "$TAKT" release history weld-pm --at "$NOW"

bold "17. a deliberately bad v2 from a notebook (expects a feature the plant does not send) meets the prod canary"
FEATURES=$(TAKT_TOKEN=$SAM "$TAKT" model show weld-pm 1 -o json | json_field "['feature_names']")
/usr/bin/python3 - "$DIR/bad-model.json" "$FEATURES" <<'PY'
import ast, sys
import numpy as np, xgboost as xgb
names = ast.literal_eval(sys.argv[2]) + ["wire_feed_rate_m_min"]
rng = np.random.default_rng(5)
x = rng.random((500, len(names)))
d = xgb.DMatrix(x, label=(x[:, -1] > 0.5).astype(int), feature_names=names)
xgb.train({"objective": "binary:logistic", "max_depth": 3}, d, 20).save_model(sys.argv[1])
PY
echo '{"auc": 0.97}' > "$DIR/bad-metrics.json"
TAKT_TOKEN=$EVE "$TAKT" model register --file "$DIR/bad-model.json" --framework xgboost --group weld-pm \
  --metrics "$DIR/bad-metrics.json"
TAKT_TOKEN=$ADA "$TAKT" model approve weld-pm 2 --comment "notebook AUC 0.97"
TAKT_TOKEN=$EVE "$TAKT" release wait weld-pm --version 2
TAKT_TOKEN=$BOB "$TAKT" release approve weld-pm --stage int
TAKT_TOKEN=$EVE "$TAKT" release wait weld-pm --version 2
TAKT_TOKEN=$ADA "$TAKT" release approve weld-pm --stage prod
TAKT_TOKEN=$BOB "$TAKT" release approve weld-pm --stage prod
echo "the plant keeps calling prod with its usual rows; 25 % of them now reach v2:"
for _ in $(seq 1 600); do
  curl -s -o /dev/null -X POST "$TAKT_URL/endpoints/weld-pm-prod/invocations" \
    -H "Authorization: Bearer $MES" -H 'Content-Type: text/csv' --data-binary "$ROW"
  TAKT_TOKEN=$EVE "$TAKT" release list weld-pm --limit 1 -o json | grep -q '"status": "InProgress"' || break
done
TAKT_TOKEN=$EVE "$TAKT" release wait weld-pm --version 2
TAKT_TOKEN=$EVE "$TAKT" release status weld-pm
TAKT_TOKEN=$ADA "$TAKT" endpoint show weld-pm-prod
echo "the canary's failed requests, from the endpoint's request log:"
TAKT_TOKEN=$ADA "$TAKT" endpoint logs weld-pm-prod --limit 200 -o json | /usr/bin/python3 -c \
  "import json,sys; l=[r for r in json.load(sys.stdin) if r['status']>=400]; print(len(l), 'failed' + (', e.g. %s %s: %s' % (l[0]['variant'], l[0]['status'], l[0]['error']) if l else ''))"

bold "18. how prod serves: replicas and queues, Prometheus metrics, captured requests, boto3 with an access key"
TAKT_TOKEN=$ADMIN "$TAKT" endpoint capture weld-pm-prod --limit 3
echo "from /metrics (Prometheus text format):"
curl -s -H "Authorization: Bearer $EVE" "$TAKT_URL/metrics" | grep -E '^takt_(inference_requests_total|endpoint_replicas)\{endpoint="weld-pm-prod"' | head -6
KEY=$(TAKT_TOKEN=$ADMIN "$TAKT" access-key create --principal plant-mes --description "MES line 3" -o json)
echo "the plant's own boto3 code, pointed at takt (SigV4 with a takt access key):"
/usr/bin/python3 - "$TAKT_URL" "$KEY" "$ROW" <<'PY'
import json, sys
import boto3
url, key, row = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
rt = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=key["access_key"]["id"], aws_secret_access_key=key["secret_access_key"])
r = rt.invoke_endpoint(EndpointName="weld-pm-prod", ContentType="text/csv", Body=row.encode())
print("boto3 invoke_endpoint weld-pm-prod ->", r["InvokedProductionVariant"], r["Body"].read().decode().strip())
PY

if [ "${TAKT_DEMO_EXIT:-0}" = 1 ]; then
  cleanup
  echo
  echo "demo: the slice ran end to end"
  exit 0
fi

TAKT_TOKEN=$ADMIN "$TAKT" login --with-token "$ADMIN" > /dev/null
cat <<TXT

The server keeps running (pid $SERVER). Try the CLI against it:

  export TAKT_URL=$TAKT_URL TAKT_CREDENTIALS_FILE=$TAKT_CREDENTIALS_FILE   # logged in as admin
  $TAKT whoami
  $TAKT run list
  $TAKT run logs $RUN
  $TAKT model show weld-pm 1
  $TAKT dataset head weld-telemetry -n 5
  $TAKT audit list --action dataset:
  $TAKT endpoint show weld-pm-dev
  $TAKT release status weld-pm
  $TAKT release history weld-pm

Stop it with: kill $SERVER
TXT
