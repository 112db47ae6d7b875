"""The image study: build the variants, measure them, write the report. Run `python -m bench --help`."""
