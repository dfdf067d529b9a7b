"""The reports of runs: figures, markdown tables, the HTML pages and their screenshots, and the callbacks that write them after a fit."""
