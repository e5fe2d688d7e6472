"""A local Kubernetes for the demo and the tests: API server, controllers, pods as processes."""
