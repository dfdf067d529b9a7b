"""``python -m ddpm_lit.report DIR [--html]``: the runs' report (ddpm_lit.apps.report)."""

from ddpm_lit.apps.report import main

if __name__ == "__main__":
    main()
