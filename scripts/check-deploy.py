#!/usr/bin/env python3
"""Checks the deployment files (deploy/): what no container engine or cluster here can run is
checked for what it says.

- The Dockerfile: a multi-stage build of the locked workspace; a runtime stage that runs as a
  numeric non-root user, with the binary and the config where the manifests expect them.
- The Kubernetes manifests (deploy/k8s): every resource valid against the Kubernetes schemas
  (kubernetes-validate, which bundles them: offline), strictly; the production overlay's
  result too; the Deployment's command, user, mounts, probes and grace period consistent with
  the image and the config; the ConfigMap's config passing `sluice check`.

    scripts/check-deploy.sh      (makes the venv with kubernetes-validate, then runs this)
"""

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


def dockerfile() -> dict:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    check(len(stages) == 2, "the Dockerfile has a build stage and a runtime stage")
    build, runtime = stages[0], stages[-1]
    check("cargo build --release --locked -p sluice" in build, "the build stage builds the locked sluice binary")
    rust = re.match(r"rust:(\d+)\.(\d+)", build)
    wanted = re.search(r'rust-version\s*=\s*"(\d+)\.(\d+)', (ROOT / "Cargo.toml").read_text())
    check(
        bool(rust and wanted) and (int(rust[1]), int(rust[2])) >= (int(wanted[1]), int(wanted[2])),
        "the build image's Rust is at least the workspace's rust-version",
    )
    user = re.findall(r"(?m)^USER (\d+)(?::(\d+))?$", runtime)
    check(len(user) == 1 and int(user[0][0]) != 0, "the runtime stage runs as a numeric non-root USER")
    entry = json.loads(re.search(r"(?m)^ENTRYPOINT (.*)$", runtime)[1])
    cmd = json.loads(re.search(r"(?m)^CMD (.*)$", runtime)[1])
    check(entry == ["/usr/local/bin/sluice"], "the entrypoint is the binary")
    check(re.search(r"(?m)^COPY --from=build \S+ /usr/local/bin/sluice$", runtime) is not None, "the binary is copied from the build stage")
    check("rust" not in runtime.split("\n", 1)[0], "the runtime stage is not the Rust image")
    return {"uid": int(user[0][0]) if user else None, "cmd": cmd}


def resources(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate(docs: list[dict], name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, d in enumerate(docs):
            f = Path(tmp) / f"{name}-{i}.yaml"
            f.write_text(yaml.safe_dump(d))
            files.append(str(f))
        r = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", "-k", K8S_VERSION, *files], capture_output=True, text=True
        )
        check(r.returncode == 0, f"{name}: the Kubernetes schemas ({K8S_VERSION}) refuse it:\n{r.stdout}{r.stderr}")


def main() -> None:
    sluice = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/debug/sluice")
    image = dockerfile()
    base = DEPLOY / "k8s/base"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for r in kustomization["resources"]:
        check((base / r).exists(), f"kustomization names {r}, which exists")
        if (base / r).exists():
            docs.extend(resources(base / r))
    validate(docs, "base")
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    dep = by_kind.get(("Deployment", "sluice"))
    check(dep is not None, "a Deployment named sluice")
    if dep:
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        check(c.get("args") == image["cmd"], "the Deployment runs the image's command")
        check(spec["securityContext"].get("runAsUser") == image["uid"], "the Deployment runs as the image's user")
        check(spec["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        config_path = image["cmd"][image["cmd"].index("--config") + 1]
        check(os.path.dirname(config_path) in mounts, "the config's directory is mounted")
        check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
        check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
        check(dep["spec"]["replicas"] >= 2, "several replicas")
        cm = by_kind.get(("ConfigMap", "sluice-config"))
        check(cm is not None, "the ConfigMap the Deployment mounts")
        if cm:
            config = cm["data"][os.path.basename(config_path)]
            parsed = yaml.safe_load(config)
            drain_s = parsed.get("server", {}).get("drain_timeout_ms", 30000) / 1000
            pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            check(
                spec["terminationGracePeriodSeconds"] > pre_stop + drain_s,
                "the grace period outlasts preStop and the drain",
            )
            check(parsed["server"]["listen"].startswith("0.0.0.0:"), "the API listens beyond loopback in a pod")
            secret = by_kind.get(("Secret", "sluice-secrets"), {}).get("stringData", {})
            env = {**os.environ, **{k: "x" for k in secret}}
            env["SLUICE_POSTGRES_URL"] = "postgres://sluice:x@127.0.0.1:1/sluice"
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
                f.write(config)
            r = subprocess.run([sluice, "check", "--config", f.name], capture_output=True, text=True, env=env)
            os.unlink(f.name)
            check(r.returncode == 0, f"the ConfigMap's config passes sluice check:\n{r.stdout}{r.stderr}")
            for key in re.findall(r"(\w+)_env: (\w+)", config):
                check(key[1] in secret, f"{key[1]} (named by the config) is in the Secret")
    pdb = by_kind.get(("PodDisruptionBudget", "sluice"))
    check(pdb is not None and pdb["spec"]["selector"] == dep["spec"]["selector"], "a PodDisruptionBudget over the replicas")

    # The production overlay, applied by hand (no kustomize here): its patches' targets exist
    # and the patched resources still validate.
    overlay_dir = DEPLOY / "k8s/overlays/production"
    overlay = yaml.safe_load((overlay_dir / "kustomization.yaml").read_text())
    check((overlay_dir / overlay["resources"][0]).resolve() == base.resolve(), "the overlay builds on the base")
    patched = copy.deepcopy(docs)
    for p in overlay.get("patches", []):
        t = p["target"]
        hits = [d for d in patched if d["kind"] == t["kind"] and d["metadata"]["name"] == t["name"]]
        check(len(hits) == 1, f"the overlay's patch target {t} exists")
        for op in yaml.safe_load(p["patch"]):
            for d in hits:
                keys = op["path"].strip("/").split("/")
                node = d
                for k in keys[:-1]:
                    node = node[k]
                check(op["op"] == "replace" and keys[-1] in node, f"patch {op} replaces an existing field")
                node[keys[-1]] = op["value"]
    for img in overlay.get("images", []):
        check(any(c["image"].split(":")[0] == img["name"] for d in patched if d["kind"] == "Deployment"
                  for c in d["spec"]["template"]["spec"]["containers"]), f"the overlay's image {img['name']} is used")
    validate(patched, "production")

    if failures:
        print("check-deploy: " + "\ncheck-deploy: ".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"check-deploy: the Dockerfile and {len(docs)} Kubernetes resources are consistent and valid ({K8S_VERSION})")


if __name__ == "__main__":
    main()
