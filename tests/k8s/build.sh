#!/usr/bin/env bash
# Builds a real kube-apiserver, kubectl and etcd from the Go module proxy, once per version,
# into a cache outside the repository, and prints the directory holding the three binaries.
#
# Why outside the repo: CI runs in a fresh clone on this same machine, so a cache under
# $HOME survives between clones; a cache inside the clone would be rebuilt on every run.
# Cold cost (measured on the 2-core machine, see docs/operator.md): a few tens of minutes
# of CPU for kube-apiserver + kubectl, a few minutes for etcd; a warm cache costs nothing.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, apiserver, client-go, ...) at
# v0.0.0 and replaces them with ./staging paths, which a dependent module ignores; so the
# wrapper module below replaces each of them with its published v0.<minor>.<patch>.
#
# Environment:
#   K8S_VERSION       k8s.io/kubernetes version (default v1.36.3)
#   ETCD_VERSION      go.etcd.io/etcd/server/v3 version (default v3.6.16)
#   RIFFLE_K8S_CACHE  cache root (default $HOME/.cache/riffle-k8s)
set -euo pipefail

k8s_version="${K8S_VERSION:-v1.36.3}"
etcd_version="${ETCD_VERSION:-v3.6.16}"
root="${RIFFLE_K8S_CACHE:-$HOME/.cache/riffle-k8s}"
out="$root/kubernetes-$k8s_version-etcd-$etcd_version"

if [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "build.sh: the go command is missing" >&2; exit 1; }
mkdir -p "$root"
# One build at a time, even if two test runs start together.
exec 9>"$root/.lock"
flock 9
if [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]]; then
    echo "$out"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
staging_version="v0.${k8s_version#v1.}"
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
start=$SECONDS

# --- kube-apiserver and kubectl ---------------------------------------------------------
mkdir -p "$work/k8s" "$work/bin"
cd "$work/k8s"
go mod init riffle.invalid/k8s-tools >/dev/null 2>&1
gomod="$(go mod download -json "k8s.io/kubernetes@$k8s_version" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
go mod edit -require="k8s.io/kubernetes@$k8s_version"
while read -r mod; do
    go mod edit -replace="$mod=$mod@$staging_version"
done < <(sed -nE 's#^\s*(k8s\.io/[A-Za-z0-9._-]+) => \./staging/.*#\1#p' "$gomod")
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
go mod tidy >&2
echo "build.sh: building kube-apiserver and kubectl $k8s_version" >&2
go build -trimpath -ldflags="-s -w \
  -X k8s.io/component-base/version.gitVersion=$k8s_version \
  -X k8s.io/component-base/version.gitMajor=1 \
  -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2) \
  -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version" \
    -o "$work/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
echo "build.sh: kube-apiserver + kubectl built after $((SECONDS - start)) s" >&2

# --- etcd (its own module: its dependency versions differ from Kubernetes') --------------
mkdir -p "$work/etcd"
cd "$work/etcd"
go mod init riffle.invalid/etcd-tools >/dev/null 2>&1
go mod edit -require="go.etcd.io/etcd/server/v3@$etcd_version"
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
go mod tidy >&2
echo "build.sh: building etcd $etcd_version" >&2
go build -trimpath -ldflags="-s -w" -o "$work/bin/etcd" go.etcd.io/etcd/server/v3 >&2
echo "build.sh: all built after $((SECONDS - start)) s" >&2

mkdir -p "$out.tmp"
mv "$work/bin/"* "$out.tmp/"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
