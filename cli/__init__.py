"""The ``polycodec`` command line (see ``docs/cli.md``)."""
