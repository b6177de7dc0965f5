"""The doors into the mail path. Each turns the engine's Verdict into its own protocol's answer."""
