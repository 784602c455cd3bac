"""``python -m lightning_skd``: the ``lightning-skd`` command (:func:`lightning_skd.commands.main`)."""

from lightning_skd.commands import main

if __name__ == "__main__":
    main()
