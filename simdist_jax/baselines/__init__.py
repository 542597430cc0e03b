"""Model-free baselines under the adaptation loop's real-data budget (issue 20): their pure losses
(`losses`), the networks on SimDist's encoders (`networks`), and the algorithms (`bc`: single-step behaviour cloning
of the clean expert actions in the sim dataset, the starting policy of the RL baselines)."""
