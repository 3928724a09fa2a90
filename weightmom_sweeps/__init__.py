"""The `weightmom` command line: the library's commands and the sweep commands, assembled above both packages."""
