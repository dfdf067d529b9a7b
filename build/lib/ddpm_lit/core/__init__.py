"""The maths of DDPM, no Lightning: schedules, Gaussians, the diffusion process, samplers, the likelihood bound."""
