"""The release controller: what the gate decides for a running canary, from the cluster's
state and Prometheus, kept in the cluster so any process can pick it up."""
