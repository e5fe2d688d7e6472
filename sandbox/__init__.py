"""Local stand-ins for the outside world, used by the demo and the tests only."""
