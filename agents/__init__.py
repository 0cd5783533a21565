"""Meta-RL agents: networks, latent heads, losses, SAC, buffers, trainers and checkpoints."""
