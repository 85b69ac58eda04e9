"""Community governance: governed parameters inside hard bounds, proposals, member votes
signed with member keys, weights from verified contribution, tallies anyone can recompute."""
