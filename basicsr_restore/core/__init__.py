"""The rules every caller shares: reading checkpoints and finding their network, the one inference path, speed
switches, image I/O, distributed set-up, exact resume, errors and option files. Plain torch: nothing here imports a
verb or what changes inside basicsr (``basicsr_restore.host``)."""
