"""`python train.py ...` from a checkout: the same command as `python -m ddpm_lit.train ...` (ddpm_lit/train.py)."""

from ddpm_lit.train import main

if __name__ == "__main__":
    main()
