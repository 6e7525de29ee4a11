#!/bin/sh
# A stand-in deploy for the README tour, started by
#   countersign run --operation deploy --resource prod/web --param version=1.4.2 -- ./agents/examples/run/deploy.sh 1.4.2
# once someone approved. It checks its credential the way a real deploy target
# would: valid for this audience, operation and resource, and covering exactly
# the parameters that were approved (COUNTERSIGN_PARAMETERS_JSON: the --param
# values, and the command that runs as "command"), whose version must be the
# one it deploys. The credential comes from the environment, never argv.
set -eu
version="${1:?usage: deploy.sh VERSION}"
here="$(dirname "$0")"
countersign() { node "$here/../../bin/countersign.js" "$@"; }

countersign verify --audience https://deploy.example.org --operation deploy --resource prod/web \
  --parameters-json "$COUNTERSIGN_PARAMETERS_JSON" >&2
node -e 'const p = JSON.parse(process.env.COUNTERSIGN_PARAMETERS_JSON); if (p.version !== process.argv[1]) { console.error(`deploy.sh: the approval is for version ${p.version}, not ${process.argv[1]}`); process.exit(1); }' "$version"
echo "deployed web $version (request $COUNTERSIGN_REQUEST_ID, credential checked)"
