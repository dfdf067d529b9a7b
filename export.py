"""`python export.py ...` from a checkout: the same command as `python -m ddpm_lit.export ...` (ddpm_lit/export.py)."""

from ddpm_lit.export import main

if __name__ == "__main__":
    main()
