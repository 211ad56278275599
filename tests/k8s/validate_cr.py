"""Validates custom resources against the openAPIV3Schema of our CRDs.

usage: validate_cr.py CRDS.yaml FILE... ; a FILE of '-' is read from stdin. Documents whose
kind our CRDs do not define are skipped. Exits 1 if any document is invalid, printing each
error; prints `checked N` on success. (x-kubernetes-* keywords such as CEL rules are not
checked here: the real kube-apiserver checks them in the e2e test.)
"""
import sys

import jsonschema
import yaml

crds = {}
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d.get("kind") == "CustomResourceDefinition":
        for v in d["spec"]["versions"]:
            key = (f'{d["spec"]["group"]}/{v["name"]}', d["spec"]["names"]["kind"])
            crds[key] = v["schema"]["openAPIV3Schema"]
rc, checked = 0, 0
for f in sys.argv[2:]:
    text = sys.stdin.read() if f == "-" else open(f).read()
    for doc in filter(None, yaml.safe_load_all(text)):
        schema = crds.get((doc.get("apiVersion"), doc.get("kind")))
        if schema is None:
            continue
        checked += 1
        for e in jsonschema.Draft4Validator(schema).iter_errors(doc):
            rc = 1
            name = doc.get("metadata", {}).get("name")
            path = ".".join(map(str, e.path))
            print(f"ERROR {f} {doc['kind']}/{name}: {path}: {e.message}")
if rc == 0:
    print(f"checked {checked}")
sys.exit(rc)
