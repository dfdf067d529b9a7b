"""The Hydra configs the commands compose (a package, so that Hydra finds them in an installed ddpm_lit)."""
