"""One module per domain (`defs/<domain>/`), each exposing `defs`; definitions.py merges them."""
