"""Flash-sale campaigns and the redemption path: Redis gate, group commit, sweeper, audit."""
