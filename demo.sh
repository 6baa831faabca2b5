#!/usr/bin/env bash
# podid demo: builds podid, starts the server on the embedded SQLite default,
# registers a cluster and manages its pod identity associations with the real
# aws CLI and with podid's own CLI. Cleans up everything it started, also on
# Ctrl-C. (The article's full scenario — agent, webhook, S3 through moto —
# arrives with the node agent and the end-to-end issue.)
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\n\033[31mdemo failed at step: %s\033[0m\n' "$CURRENT" >&2; }
CURRENT="setup"
trap fail ERR

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "1. install what is missing (Python venv with the pinned aws CLI)"
CURRENT="setup"; scripts/setup.sh
step "2. build podid"
CURRENT="build"; cargo build --quiet -p podid --locked
PODID=$PWD/target/debug/podid

step "3. start 'podid server' on the embedded SQLite default ($WORK/podid.db)"
CURRENT="server start"
ADMIN_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
cat > "$WORK/keys.toml" <<KEYS
[[key]]
access_key_id = "PODIDDEMOADMIN"
secret_access_key = "$ADMIN_SECRET"
role = "admin"
KEYS
mkfifo "$WORK/out"
"$PODID" server --listen 127.0.0.1:0 --database-url "sqlite://$WORK/podid.db" \
    --keys-file "$WORK/keys.toml" --region us-east-1 --account-id 111122223333 \
    > "$WORK/out" 2> "$WORK/server.log" &
SERVER_PID=$!
read -r LINE < "$WORK/out"
ENDPOINT=${LINE#podid server listening on }
echo "server: $ENDPOINT (log: $WORK/server.log)"

# Both CLIs sign with the admin key, like any AWS client.
export AWS_ACCESS_KEY_ID=PODIDDEMOADMIN AWS_SECRET_ACCESS_KEY=$ADMIN_SECRET AWS_DEFAULT_REGION=us-east-1
: > "$WORK/aws-config"
export AWS_CONFIG_FILE=$WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$WORK/aws-config PODID_ENDPOINT=$ENDPOINT
AWS=$PWD/.venv/bin/aws

step "4. register cluster 'blue' (its token issuer and signing keys)"
CURRENT="cluster register"
cat > "$WORK/jwks.json" <<'JWKS'
{"keys":[{"kty":"RSA","kid":"demo","alg":"RS256","use":"sig","e":"AQAB","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"}]}
JWKS
"$PODID" cluster register --name blue --issuer https://oidc.blue.example --jwks-file "$WORK/jwks.json"

step "5. the article's command, with the real aws CLI: aws eks create-pod-identity-association"
CURRENT="aws eks create-pod-identity-association"
"$AWS" eks create-pod-identity-association --endpoint-url "$ENDPOINT" --cluster-name blue \
    --namespace default --service-account boto3 \
    --role-arn arn:aws:iam::111122223333:role/simple-pod-identity-role --output json

step "6. every association of the cluster in one place: podid association list"
CURRENT="podid association list"
"$PODID" association list --cluster-name blue

step "7. the same mapping twice is refused (one association per service account)"
CURRENT="duplicate refused"
if "$AWS" eks create-pod-identity-association --endpoint-url "$ENDPOINT" --cluster-name blue \
    --namespace default --service-account boto3 \
    --role-arn arn:aws:iam::111122223333:role/simple-pod-identity-role 2> "$WORK/err"; then
    echo "expected ResourceInUseException" >&2; exit 1
fi
cat "$WORK/err"

step "8. restart the server: the association is still there (SQLite, WAL)"
CURRENT="restart"
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
"$PODID" server --listen "${ENDPOINT#http://}" --database-url "sqlite://$WORK/podid.db" \
    --keys-file "$WORK/keys.toml" --region us-east-1 --account-id 111122223333 \
    > "$WORK/out" 2>> "$WORK/server.log" &
SERVER_PID=$!
read -r LINE < "$WORK/out"
"$AWS" eks list-pod-identity-associations --endpoint-url "$ENDPOINT" --cluster-name blue --output table

step "done: podid served the EKS association API to the unchanged aws CLI"
