"""Values the whole package agrees on."""

#: Target value of padding and of every position no loss or metric counts: the default ``ignore_index`` of
#: ``torch.nn.functional.cross_entropy``, written by the collate functions of :mod:`lightning_skd.data`.
IGNORE_INDEX = -100
