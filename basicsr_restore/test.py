"""``python -m basicsr_restore.test -opt X.yml``: basicsr's test runner with this package registered and the
current directory as root (results/ goes there). Same arguments as ``python -m basicsr.test``."""
from basicsr_restore.train import main

if __name__ == '__main__':
    main('test')
