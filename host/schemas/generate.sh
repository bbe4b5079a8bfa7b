#!/usr/bin/env bash
# Regenerates the OpenAPI schemas embedded in kitsync (host/schemas/kubernetes-<minor>.json.gz)
# from the k8s.io/kubernetes Go module at each shipped version: its api/openapi-spec/swagger.json,
# reduced by host/examples/schemas.rs. The newest is the version tests/control-plane pins.
#
#   host/schemas/generate.sh
#
# To ship another version: add it below and to SHIPPED in host/src/schema/catalog.rs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
versions=(v1.34.4 v1.35.4 v1.36.3)

for version in "${versions[@]}"; do
    # `go mod download` fetches the module into the module cache (or finds it there).
    dir=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n "$dir" ]] || { echo "schemas: k8s.io/kubernetes@$version could not be downloaded" >&2; exit 1; }
    minor=$(echo "$version" | sed 's/^v\([0-9]*\.[0-9]*\).*/\1/')
    cargo run --quiet --manifest-path "$here/../Cargo.toml" --example schemas -- \
        "$dir/api/openapi-spec/swagger.json" "$version" "$here/kubernetes-$minor.json.gz"
done
