"""`python evaluate.py ...` from a checkout: the same command as `python -m ddpm_lit.evaluate ...` (ddpm_lit/evaluate.py)."""

from ddpm_lit.evaluate import main

if __name__ == "__main__":
    main()
