"""The command line: ``basicsr-restore <verb>`` (``cli``), one module per verb, ``prepare/`` with one module per
dataset, and the argument parsing the verbs share (``args``). No verb imports another."""
