// Package kubernetes holds peerd's Kubernetes manifests (the *.yaml files
// beside this one, rendered by kustomization.yaml) and, in its test, their
// validation: every document decodes strictly into the official k8s.io/api
// types, and the settings that matter (probes, dataplane flags,
// capabilities, the NetworkPolicy, the external services) are checked. It
// has no Go API; nothing imports it.
package kubernetes
