"""Weights: resolve a Hub revision to a commit, fetch, verify every byte, publish to NFS."""
