"""The studies: what each choice costs, measured on images that `images/` builds. Run `python -m bench --help`."""
