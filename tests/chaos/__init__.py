"""The chaos tier (a package, so that its sandbox fixture is scoped to it and given back before the next tier)."""
