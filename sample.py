"""`python sample.py ...` from a checkout: the same command as `python -m ddpm_lit.sample ...` (ddpm_lit/sample.py)."""

from ddpm_lit.sample import main

if __name__ == "__main__":
    main()
